//! A guest built against wasi-nn's published Rust bindings (generated.rs,
//! unmodified; see NOTICE) for examples/foreign: it classifies the first
//! N MNIST test digits (uncompressed IDX files in /data) one compute per
//! batch of 100, with the graph named "mnist" (load_by_name) or, given a
//! second argument, with the ONNX file at that path (load), and prints its
//! first predictions and its count of right answers.
//!
//!     main N [MODEL.onnx]

mod generated;

use generated as nn;

fn be32(b: &[u8], at: usize) -> usize {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]) as usize
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(100);
    let images = std::fs::read("/data/t10k-images-idx3-ubyte").expect("images");
    let labels = std::fs::read("/data/t10k-labels-idx1-ubyte").expect("labels");
    let n = n.min(be32(&images, 4)).min(be32(&labels, 4));
    let graph = match args.get(2) {
        Some(path) => {
            let bytes = std::fs::read(path).expect("model file");
            unsafe { nn::load(&[&bytes], nn::GRAPH_ENCODING_ONNX, nn::EXECUTION_TARGET_CPU) }
        }
        None => unsafe { nn::load_by_name("mnist") },
    };
    let graph = match graph {
        Ok(g) => g,
        Err(e) => {
            eprintln!("wasi-nn load: {}", e);
            std::process::exit(1);
        }
    };
    let ctx = unsafe { nn::init_execution_context(graph) }.expect("init_execution_context");
    let (mut correct, mut shown) = (0, Vec::new());
    let mut first = 0;
    while first < n {
        let b = 100.min(n - first);
        let x: Vec<f32> = images[16 + first * 784..16 + (first + b) * 784].iter().map(|&v| v as f32 / 255.0).collect();
        let data: Vec<u8> = x.iter().flat_map(|v| v.to_le_bytes()).collect();
        let dims = [b as u32, 1, 28, 28];
        let t = nn::Tensor { dimensions: &dims, type_: nn::TENSOR_TYPE_F32, data: &data };
        unsafe { nn::set_input(ctx, 0, t) }.expect("set_input");
        unsafe { nn::compute(ctx) }.expect("compute");
        let mut out = vec![0u8; b * 10 * 4];
        let written = unsafe { nn::get_output(ctx, 1, out.as_mut_ptr(), out.len() as u32) }.expect("get_output");
        assert_eq!(written as usize, out.len());
        for i in 0..b {
            let p: Vec<f32> = out[i * 40..(i + 1) * 40].chunks(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
            let mut guess = 0;
            for c in 0..10 {
                if p[c] > p[guess] {
                    guess = c;
                }
            }
            if guess == labels[8 + first + i] as usize {
                correct += 1;
            }
            if shown.len() < 20 {
                shown.push(guess.to_string());
            }
        }
        first += b;
    }
    println!("first predictions: {}", shown.join(" "));
    println!("right {} of {}", correct, n);
}
