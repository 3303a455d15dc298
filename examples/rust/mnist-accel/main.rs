//! mnist-accel: a Rust guest of the accel ABI that classifies MNIST test
//! digits with the seed's network (examples/internal/mnistnet) and prints
//! what the Go guest examples/mnist prints: the accuracy, the confusion
//! matrix and the images per second, then its first predictions.
//!
//! With `-mode model` (the default) it runs the ONNX model the node holds,
//! one model_run per batch; with `-mode ops` it runs the network itself
//! with single host calls (conv2d, relu, maxpool2d, tensor_reshape, matmul,
//! add_bias, softmax) on the weights examples/mnist-train writes (an ANT1
//! tensors file, mnist/tensors.go). On the ref backend both answer as the
//! Go guest does, digit for digit.
//!
//! It reads the uncompressed IDX files t10k-images-idx3-ubyte and
//! t10k-labels-idx1-ubyte (gunzip -k the files make deps fetches).
//!
//!     /usr/bin/rustc --edition 2021 --target wasm32-wasi -O -o mnist-accel.wasm main.rs
//!     accelnode run --dir bin/mnist-raw:/data:ro --model mnist=bin/mnist.onnx mnist-accel.wasm
//!     accelnode run --dir bin/mnist-raw:/data:ro --dir bin:/w:ro mnist-accel.wasm -- -mode ops -weights /w/mnist-weights.ant

#[path = "../../../hostfn/guest/rust/accelnode.rs"]
mod accelnode;

use accelnode::{Conv2DParams, Model, Pool2DParams, Tensor};
use std::collections::HashMap;
use std::time::{Duration, Instant};

const SIDE: usize = 28;
const KERNEL: u32 = 5;
const PAD: u32 = KERNEL / 2;
const CONV2: usize = 32;
const FLAT: usize = CONV2 * (SIDE / 4) * (SIDE / 4);
const CLASSES: usize = 10;
const SHOWN: usize = 20; // predictions printed

type Res<T> = Result<T, String>;

struct Opts {
    data: String,
    model: String,
    batch: usize,
    n: usize,
    mode: String,
    weights: String,
}

fn parse() -> Res<Opts> {
    let mut o = Opts {
        data: "/data".into(),
        model: "mnist".into(),
        batch: 256,
        n: 10000,
        mode: "model".into(),
        weights: String::new(),
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < args.len() {
        let flag = args[i].trim_start_matches('-');
        let value = args.get(i + 1).ok_or(format!("flag -{} needs a value", flag))?.clone();
        let num = || value.parse::<usize>().map_err(|_| format!("-{}: {:?} is not a count", flag, value));
        match flag {
            "data" => o.data = value.clone(),
            "model" => o.model = value.clone(),
            "batch" => o.batch = num()?,
            "n" => o.n = num()?,
            "mode" => o.mode = value.clone(),
            "weights" => o.weights = value.clone(),
            _ => return Err(format!("unknown flag -{}", flag)),
        }
        i += 2;
    }
    if o.batch < 1 || o.n < 1 {
        return Err("-batch and -n must be positive".into());
    }
    if o.mode != "model" && o.mode != "ops" {
        return Err(format!("-mode {:?}: want model or ops", o.mode));
    }
    if o.mode == "ops" && o.weights.is_empty() {
        return Err("-mode ops needs -weights FILE".into());
    }
    Ok(o)
}

fn be32(b: &[u8], at: usize) -> usize {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]) as usize
}

/// idx reads an uncompressed IDX file: its count and its data.
fn idx(path: &str, magic: usize, header: usize) -> Res<(usize, Vec<u8>)> {
    let b = std::fs::read(path).map_err(|e| format!("{}: {} (the guest reads the files uncompressed: gunzip -k)", path, e))?;
    if b.len() < header || be32(&b, 0) != magic {
        return Err(format!("{}: not an uncompressed IDX file of magic {:#010x}", path, magic));
    }
    Ok((be32(&b, 4), b[header..].to_vec()))
}

/// ant1 reads a tensors file (mnist/tensors.go): "ANT1", u32 count, then
/// per tensor u16 name length, name, u8 rank, rank u32 dims, f32 values.
fn ant1(path: &str) -> Res<HashMap<String, (Vec<u32>, Vec<f32>)>> {
    let b = std::fs::read(path).map_err(|e| format!("{}: {}", path, e))?;
    let bad = || format!("{}: not a tensors file", path);
    let mut at = 0usize;
    let mut take = |n: usize| -> Res<&[u8]> {
        let s = b.get(at..at + n).ok_or_else(bad)?;
        at += n;
        Ok(s)
    };
    if take(4)? != b"ANT1" {
        return Err(bad());
    }
    let le = |s: &[u8]| u32::from_le_bytes([s[0], s[1], s[2], s[3]]);
    let count = le(take(4)?);
    let mut ts = HashMap::new();
    for _ in 0..count {
        let nl = take(2)?;
        let nl = u16::from_le_bytes([nl[0], nl[1]]) as usize;
        let name = String::from_utf8(take(nl)?.to_vec()).map_err(|_| bad())?;
        let rank = take(1)?[0] as usize;
        let mut dims = Vec::new();
        for _ in 0..rank {
            dims.push(le(take(4)?));
        }
        let n: usize = dims.iter().map(|&d| d as usize).product();
        let vals = take(4 * n)?.chunks(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
        ts.insert(name, (dims, vals));
    }
    Ok(ts)
}

/// The network's parameters on the node, as examples/internal/mnistnet
/// lists them.
struct Net {
    p: Vec<Tensor>,
}

const PARAMS: [&str; 8] = ["conv1.w", "conv1.b", "conv2.w", "conv2.b", "dense1.w", "dense1.b", "dense2.w", "dense2.b"];

impl Net {
    fn load(path: &str) -> Res<Net> {
        let ts = ant1(path)?;
        let mut p = Vec::new();
        for name in PARAMS.iter() {
            let (dims, vals) = ts.get(*name).ok_or(format!("{}: no tensor {}", path, name))?;
            p.push(Tensor::from_f32(vals, dims).map_err(|e| e.to_string())?);
        }
        Ok(Net { p })
    }

    /// probs runs the network on x [b,1,28,28] with single host calls:
    /// conv 5×5 (16) → relu → max-pool 2 → conv 5×5 (32) → relu → max-pool 2
    /// → dense 128 → relu → dense 10 → softmax.
    fn probs(&self, x: &Tensor, b: usize) -> accelnode::Result<Tensor> {
        let p = &self.p;
        let conv = Conv2DParams { pad_top: PAD, pad_left: PAD, pad_bottom: PAD, pad_right: PAD, ..Default::default() };
        let pool = Pool2DParams { kernel_h: 2, kernel_w: 2, stride_h: 2, stride_w: 2, ..Default::default() };
        let c1 = accelnode::conv2d(x, &p[0], Some(&p[1]), &conv)?;
        let p1 = accelnode::maxpool2d(&accelnode::relu(&c1)?, &pool)?;
        let c2 = accelnode::conv2d(&p1, &p[2], Some(&p[3]), &conv)?;
        let p2 = accelnode::maxpool2d(&accelnode::relu(&c2)?, &pool)?;
        p2.reshape(&[b as u32, FLAT as u32])?;
        let h = accelnode::relu(&accelnode::add_bias(&accelnode::matmul(&p2, &p[4], 0)?, &p[5], 1)?)?;
        let logits = accelnode::add_bias(&accelnode::matmul(&h, &p[6], 0)?, &p[7], 1)?;
        accelnode::softmax(&logits)
    }
}

/// json_field finds "key":"value" in the node's info.
fn json_field(json: &str, key: &str) -> String {
    let k = format!("\"{}\":\"", key);
    json.find(&k)
        .and_then(|i| json[i + k.len()..].split('"').next())
        .unwrap_or("?")
        .to_string()
}

fn run(o: &Opts) -> Res<()> {
    let (n_img, images) = idx(&format!("{}/t10k-images-idx3-ubyte", o.data), 0x803, 16)?;
    let (n_lab, labels) = idx(&format!("{}/t10k-labels-idx1-ubyte", o.data), 0x801, 8)?;
    let count = o.n.min(n_img).min(n_lab);
    let e = |e: accelnode::Error| e.to_string();
    let mut model = None;
    let mut net = None;
    if o.mode == "model" {
        model = Some(Model::open(&o.model).map_err(|err| format!("model {:?}: {}", o.model, err))?);
    } else {
        net = Some(Net::load(&o.weights)?);
    }
    let info = accelnode::info().map_err(e)?;
    let side = SIDE * SIDE;
    let mut x = vec![0f32; o.batch * side];
    let mut probs = vec![0f32; o.batch * CLASSES];
    let mut confusion = [[0usize; CLASSES]; CLASSES];
    let mut guesses = Vec::new();
    let mut correct = 0;
    let mut busy = Duration::ZERO;
    let mut first = 0;
    while first < count {
        let b = o.batch.min(count - first);
        for (d, &v) in x[..b * side].iter_mut().zip(&images[first * side..(first + b) * side]) {
            *d = v as f32 / 255.0;
        }
        let start = Instant::now();
        let xt = Tensor::from_f32(&x[..b * side], &[b as u32, 1, SIDE as u32, SIDE as u32]).map_err(e)?;
        let out = match (&model, &net) {
            (Some(m), _) => m.run(&[&xt], 2).map_err(e)?.swap_remove(1),
            (_, Some(n)) => n.probs(&xt, b).map_err(e)?,
            _ => unreachable!(),
        };
        out.read_f32(0, &mut probs[..b * CLASSES]).map_err(e)?;
        drop(out);
        drop(xt);
        busy += start.elapsed();
        for i in 0..b {
            let p = &probs[i * CLASSES..(i + 1) * CLASSES];
            let label = labels[first + i] as usize;
            let mut guess = 0;
            for c in 0..CLASSES {
                if p[c] > p[guess] {
                    guess = c;
                }
            }
            confusion[label][guess] += 1;
            if guess == label {
                correct += 1;
            }
            if guesses.len() < SHOWN {
                guesses.push(guess.to_string());
            }
        }
        first += b;
    }
    println!("mnist: {} test digits, batch {}, on {} ({} mode)", count, o.batch, json_field(&info, "backend"), json_field(&info, "mode"));
    println!(
        "accuracy {:.2}% ({} of {}), {:.0} images/s",
        100.0 * correct as f64 / count as f64,
        correct,
        count,
        count as f64 / busy.as_secs_f64().max(1e-9)
    );
    println!("confusion matrix (rows: true digit, columns: predicted):");
    print!("     ");
    for c in 0..CLASSES {
        print!("{:6}", c);
    }
    println!();
    for (l, row) in confusion.iter().enumerate() {
        print!("{:4} ", l);
        for n in row {
            print!("{:6}", n);
        }
        println!();
    }
    println!("first predictions: {}", guesses.join(" "));
    Ok(())
}

fn main() {
    let r = parse().and_then(|o| run(&o));
    if let Err(err) = r {
        eprintln!("mnist-accel: {}", err);
        std::process::exit(1);
    }
}
