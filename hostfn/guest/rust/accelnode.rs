//! accelnode.rs: the accel guest ABI, version 1, for Rust guests built for
//! wasm32-wasi. It follows docs/abi.md of accelnode as of the 2026-12-05
//! additions. Copy it beside your main.rs and declare it as a module; it
//! needs only the standard library and builds with rustc 1.63 and later:
//!
//!     mod accelnode;
//!     rustc --edition 2021 --target wasm32-wasi -O -o guest.wasm main.rs
//!     accelnode run guest.wasm
//!
//! Tensors are handles to data the node keeps on its backend, possibly in
//! GPU memory: data moves only in `write_f32` and `read_f32`, so chains of
//! operations stay on the device. A `Tensor` frees its handle when dropped.
//! Every failed call is an `Error` carrying the errno and the node's
//! sentence from `last_error`.
#![allow(dead_code)]

use std::fmt;

/// The raw imports of docs/abi.md. Every one returns an errno.
pub mod raw {
    #[link(wasm_import_module = "accel")]
    extern "C" {
        pub fn tensor_create(dtype: u32, shape: *const u32, rank: u32, out: *mut u32) -> u32;
        pub fn tensor_info(h: u32, info: *mut u32) -> u32;
        pub fn tensor_write(h: u32, first: u32, src: *const u8, count: u32) -> u32;
        pub fn tensor_read(h: u32, first: u32, dst: *mut u8, count: u32) -> u32;
        pub fn tensor_reshape(h: u32, shape: *const u32, rank: u32) -> u32;
        pub fn tensor_free(h: u32) -> u32;
        pub fn matmul(a: u32, b: u32, flags: u32, out: *mut u32) -> u32;
        pub fn conv2d(x: u32, w: u32, bias: u32, params: *const u32, out: *mut u32) -> u32;
        pub fn add_bias(x: u32, bias: u32, axis: u32, out: *mut u32) -> u32;
        pub fn add(a: u32, b: u32, out: *mut u32) -> u32;
        pub fn relu(x: u32, out: *mut u32) -> u32;
        pub fn maxpool2d(x: u32, params: *const u32, out: *mut u32) -> u32;
        pub fn softmax(x: u32, out: *mut u32) -> u32;
        pub fn model_open(name: *const u8, name_len: u32, out: *mut u32) -> u32;
        pub fn model_info(model: u32, buf: *mut u8, buf_len: u32, out_len: *mut u32) -> u32;
        pub fn model_run(model: u32, inputs: *const u32, n_inputs: u32, outputs: *mut u32, n_outputs: u32) -> u32;
        pub fn info(buf: *mut u8, buf_len: u32, out_len: *mut u32) -> u32;
        pub fn units(out: *mut u64) -> u32;
        pub fn last_error(buf: *mut u8, buf_len: u32, out_len: *mut u32) -> u32;
    }
}

/// The ABI version this module follows.
pub const ABI_VERSION: u32 = 1;

/// Errnos.
pub const OK: u32 = 0;
pub const EBADHANDLE: u32 = 1;
pub const EFAULT: u32 = 2;
pub const EINVAL: u32 = 3;
pub const ESHAPE: u32 = 4;
pub const EOVERFLOW: u32 = 5;
pub const EUNSUPPORTED: u32 = 6;
pub const ENOMEM: u32 = 7;
pub const EBUDGET: u32 = 8;
pub const ELIMIT: u32 = 9;
pub const ECANCELED: u32 = 10;
pub const EDEVICE: u32 = 11;
pub const EINTERNAL: u32 = 12;
pub const ETOOSMALL: u32 = 13;
pub const ENOENT: u32 = 14;

/// Element types.
pub const F32: u32 = 1;
pub const I32: u32 = 2;

/// matmul flags: a is stored [K, M]; b is stored [N, K].
pub const TRANS_A: u32 = 1;
pub const TRANS_B: u32 = 2;

/// The name of an errno, "EINVAL" and the like.
pub fn errno_name(e: u32) -> &'static str {
    const NAMES: [&str; 15] = [
        "OK", "EBADHANDLE", "EFAULT", "EINVAL", "ESHAPE", "EOVERFLOW", "EUNSUPPORTED", "ENOMEM",
        "EBUDGET", "ELIMIT", "ECANCELED", "EDEVICE", "EINTERNAL", "ETOOSMALL", "ENOENT",
    ];
    NAMES.get(e as usize).copied().unwrap_or("unknown errno")
}

/// A failed accel call.
#[derive(Debug, Clone)]
pub struct Error {
    pub op: &'static str,
    pub errno: u32,
    /// The node's explanation, from last_error.
    pub detail: String,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.detail.is_empty() {
            // The node's sentence names the call and the errno.
            write!(f, "accel {}", self.detail)
        } else {
            write!(f, "accel {}: {}", self.op, errno_name(self.errno))
        }
    }
}

impl std::error::Error for Error {}

pub type Result<T> = std::result::Result<T, Error>;

fn check(op: &'static str, errno: u32) -> Result<()> {
    if errno == OK {
        Ok(())
    } else {
        Err(Error { op, errno, detail: last_error() })
    }
}

/// text runs info, last_error or model_info, which write a string and its
/// length, growing the buffer when the node says it is too small.
fn text(f: &dyn Fn(*mut u8, u32, *mut u32) -> u32) -> (String, u32) {
    let mut buf = vec![0u8; 512];
    loop {
        let mut n = 0u32;
        let e = f(buf.as_mut_ptr(), buf.len() as u32, &mut n);
        if e == ETOOSMALL && n as usize > buf.len() {
            buf.resize(n as usize, 0);
            continue;
        }
        let n = if e == OK { (n as usize).min(buf.len()) } else { 0 };
        return (String::from_utf8_lossy(&buf[..n]).into_owned(), e);
    }
}

/// The node's explanation of the most recent failed call; empty after a
/// success.
pub fn last_error() -> String {
    text(&|b, l, n| unsafe { raw::last_error(b, l, n) }).0
}

/// The node's JSON description of what serves the guest:
/// {"abi":1,"backend":"ref","mode":"strict",...}.
pub fn info() -> Result<String> {
    let (s, e) = text(&|b, l, n| unsafe { raw::info(b, l, n) });
    check("info", e).map(|_| s)
}

/// The compute units used so far and the budget (0 when unlimited).
pub fn units() -> Result<(u64, u64)> {
    let mut u = [0u64; 2];
    check("units", unsafe { raw::units(u.as_mut_ptr()) })?;
    Ok((u[0], u[1]))
}

/// A tensor the node holds; dropping it frees the handle.
#[derive(Debug)]
pub struct Tensor {
    handle: u32,
}

fn produce(op: &'static str, f: impl FnOnce(*mut u32) -> u32) -> Result<Tensor> {
    let mut h = 0u32;
    check(op, f(&mut h))?;
    Ok(Tensor { handle: h })
}

fn count(shape: &[u32]) -> usize {
    shape.iter().map(|&d| d as usize).product()
}

impl Tensor {
    /// A zero-filled tensor of type dtype (F32 or I32).
    pub fn new(dtype: u32, shape: &[u32]) -> Result<Tensor> {
        produce("tensor_create", |out| unsafe { raw::tensor_create(dtype, shape.as_ptr(), shape.len() as u32, out) })
    }

    /// An f32 tensor holding data, which must hold as many values as the
    /// shape has elements.
    pub fn from_f32(data: &[f32], shape: &[u32]) -> Result<Tensor> {
        if data.len() != count(shape) {
            return Err(Error { op: "tensor_create", errno: ESHAPE, detail: format!("{} values for shape {:?}", data.len(), shape) });
        }
        let t = Tensor::new(F32, shape)?;
        t.write_f32(0, data)?;
        Ok(t)
    }

    /// Takes over a raw handle, which the Tensor frees when dropped.
    pub fn from_raw(handle: u32) -> Tensor {
        Tensor { handle }
    }

    /// The raw handle.
    pub fn handle(&self) -> u32 {
        self.handle
    }

    /// Gives up the handle without freeing it.
    pub fn into_raw(self) -> u32 {
        let h = self.handle;
        std::mem::forget(self);
        h
    }

    /// The element type and the dimensions.
    pub fn shape(&self) -> Result<(u32, Vec<u32>)> {
        let mut info = [0u32; 10];
        check("tensor_info", unsafe { raw::tensor_info(self.handle, info.as_mut_ptr()) })?;
        let rank = (info[1] as usize).min(8);
        Ok((info[0], info[2..2 + rank].to_vec()))
    }

    /// The number of elements.
    pub fn len(&self) -> Result<usize> {
        Ok(count(&self.shape()?.1))
    }

    /// Writes data into the tensor from element first.
    pub fn write_f32(&self, first: u32, data: &[f32]) -> Result<()> {
        check("tensor_write", unsafe { raw::tensor_write(self.handle, first, data.as_ptr() as *const u8, data.len() as u32) })
    }

    /// Writes data into an i32 tensor from element first.
    pub fn write_i32(&self, first: u32, data: &[i32]) -> Result<()> {
        check("tensor_write", unsafe { raw::tensor_write(self.handle, first, data.as_ptr() as *const u8, data.len() as u32) })
    }

    /// Reads dst.len() elements from element first.
    pub fn read_f32(&self, first: u32, dst: &mut [f32]) -> Result<()> {
        check("tensor_read", unsafe { raw::tensor_read(self.handle, first, dst.as_mut_ptr() as *mut u8, dst.len() as u32) })
    }

    /// Reads the whole f32 tensor.
    pub fn to_vec_f32(&self) -> Result<Vec<f32>> {
        let mut v = vec![0f32; self.len()?];
        self.read_f32(0, &mut v)?;
        Ok(v)
    }

    /// Gives the tensor a new shape with as many elements; no data moves.
    pub fn reshape(&self, shape: &[u32]) -> Result<()> {
        check("tensor_reshape", unsafe { raw::tensor_reshape(self.handle, shape.as_ptr(), shape.len() as u32) })
    }
}

impl Drop for Tensor {
    fn drop(&mut self) {
        if self.handle != 0 {
            unsafe { raw::tensor_free(self.handle) };
        }
    }
}

/// C[M,N] = A[M,K] · B[K,N]; TRANS_A and TRANS_B in flags say that a is
/// stored [K,M] or b [N,K].
pub fn matmul(a: &Tensor, b: &Tensor, flags: u32) -> Result<Tensor> {
    produce("matmul", |out| unsafe { raw::matmul(a.handle, b.handle, flags, out) })
}

/// conv2d's parameters; the default is a stride-1, unpadded, ungrouped
/// convolution (zero strides, dilations and groups mean 1).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct Conv2DParams {
    pub stride_h: u32,
    pub stride_w: u32,
    pub pad_top: u32,
    pub pad_left: u32,
    pub pad_bottom: u32,
    pub pad_right: u32,
    pub dilation_h: u32,
    pub dilation_w: u32,
    pub groups: u32,
}

/// The convolution of x[N,C,H,W] with w[OC,C/groups,KH,KW], plus bias[OC]
/// where given.
pub fn conv2d(x: &Tensor, w: &Tensor, bias: Option<&Tensor>, p: &Conv2DParams) -> Result<Tensor> {
    let b = bias.map_or(0, |b| b.handle);
    produce("conv2d", |out| unsafe { raw::conv2d(x.handle, w.handle, b, p as *const Conv2DParams as *const u32, out) })
}

/// y = x + bias, bias broadcast along axis (1 for [batch, features] and for
/// NCHW).
pub fn add_bias(x: &Tensor, bias: &Tensor, axis: u32) -> Result<Tensor> {
    produce("add_bias", |out| unsafe { raw::add_bias(x.handle, bias.handle, axis, out) })
}

/// y = a + b elementwise, for tensors of one shape.
pub fn add(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    produce("add", |out| unsafe { raw::add(a.handle, b.handle, out) })
}

/// y = max(x, +0).
pub fn relu(x: &Tensor) -> Result<Tensor> {
    produce("relu", |out| unsafe { raw::relu(x.handle, out) })
}

/// maxpool2d's parameters (zero strides mean 1).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct Pool2DParams {
    pub kernel_h: u32,
    pub kernel_w: u32,
    pub stride_h: u32,
    pub stride_w: u32,
    pub pad_top: u32,
    pub pad_left: u32,
    pub pad_bottom: u32,
    pub pad_right: u32,
}

/// The window maxima of x[N,C,H,W].
pub fn maxpool2d(x: &Tensor, p: &Pool2DParams) -> Result<Tensor> {
    produce("maxpool2d", |out| unsafe { raw::maxpool2d(x.handle, p as *const Pool2DParams as *const u32, out) })
}

/// Softmax along the last axis.
pub fn softmax(x: &Tensor) -> Result<Tensor> {
    produce("softmax", |out| unsafe { raw::softmax(x.handle, out) })
}

/// An ONNX model the node holds.
#[derive(Debug, Clone, Copy)]
pub struct Model {
    handle: u32,
}

impl Model {
    /// Looks a model up by the name it was loaded under, or by its sha256.
    pub fn open(name: &str) -> Result<Model> {
        let mut h = 0u32;
        let p = if name.is_empty() { b"\0".as_ptr() } else { name.as_ptr() };
        check("model_open", unsafe { raw::model_open(p, name.len() as u32, &mut h) })?;
        Ok(Model { handle: h })
    }

    /// The raw handle.
    pub fn handle(&self) -> u32 {
        self.handle
    }

    /// The model's JSON description of its inputs and outputs.
    pub fn info(&self) -> Result<String> {
        let h = self.handle;
        let (s, e) = text(&|b, l, n| unsafe { raw::model_info(h, b, l, n) });
        check("model_info", e).map(|_| s)
    }

    /// Runs the model on inputs, in the order of its inputs, and returns
    /// n_outputs new tensors in the order of its outputs.
    pub fn run(&self, inputs: &[&Tensor], n_outputs: usize) -> Result<Vec<Tensor>> {
        let mut ins: Vec<u32> = inputs.iter().map(|t| t.handle).collect();
        ins.push(0); // a valid pointer even for none
        let mut outs = vec![0u32; n_outputs + 1];
        check("model_run", unsafe {
            raw::model_run(self.handle, ins.as_ptr(), inputs.len() as u32, outs.as_mut_ptr(), n_outputs as u32)
        })?;
        Ok(outs[..n_outputs].iter().map(|&h| Tensor { handle: h }).collect())
    }
}
