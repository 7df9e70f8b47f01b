//! The optimisers of the `ai.onnx.preview.training` domain: Momentum (standard and
//! Nesterov), Adagrad and Adam, built from elementwise operations as their definitions
//! state them. Each node updates n tensors at once: inputs R (learning rate), T (update
//! count), then n X, n G (gradients) and n of each state (V, H); outputs n X_new, then the
//! new states. The branches on T (the first update, T = 0) are `Where`s, folded away when T
//! is a constant.

use super::super::{Ctx, V};
use crate::error::Result;
use crate::ops::{Activation, BinaryOp, Op};
use crate::tensor::{DType, Tensor};

/// The domain of these operators.
pub(in crate::onnx) const DOMAIN: &str = "ai.onnx.preview.training";

/// The operator types of [`DOMAIN`] the importer maps.
pub(in crate::onnx) const OPS: &[&str] = &["Adagrad", "Adam", "Momentum"];

/// Arithmetic on values of one float type.
struct Calc {
    t: DType,
}

impl Calc {
    fn k(&self, cx: &Ctx, v: f64) -> V {
        cx.constant(Tensor::scalar(self.t, v))
    }
    fn bin(&self, cx: &mut Ctx, op: BinaryOp, a: V, b: V) -> Result<V> {
        cx.binary(op, a, b)
    }
    fn add(&self, cx: &mut Ctx, a: V, b: V) -> Result<V> {
        self.bin(cx, BinaryOp::Add, a, b)
    }
    fn sub(&self, cx: &mut Ctx, a: V, b: V) -> Result<V> {
        self.bin(cx, BinaryOp::Sub, a, b)
    }
    fn mul(&self, cx: &mut Ctx, a: V, b: V) -> Result<V> {
        self.bin(cx, BinaryOp::Mul, a, b)
    }
    fn div(&self, cx: &mut Ctx, a: V, b: V) -> Result<V> {
        self.bin(cx, BinaryOp::Div, a, b)
    }
    /// c * a for a constant c.
    fn scale(&self, cx: &mut Ctx, c: f64, a: V) -> Result<V> {
        let k = self.k(cx, c);
        self.mul(cx, k, a)
    }
    fn sqrt(&self, cx: &mut Ctx, a: V) -> Result<V> {
        cx.add1(Op::Unary(Activation::Sqrt), &[a])
    }
    /// norm * x + g: the gradient with its L2 regularisation.
    fn regularised(&self, cx: &mut Ctx, norm: f64, x: V, g: V) -> Result<V> {
        let nx = self.scale(cx, norm, x)?;
        self.add(cx, nx, g)
    }
}

pub(super) fn map(cx: &mut Ctx) -> Result<()> {
    let (r, t) = (cx.need(0)?, cx.need(1)?);
    let ft = cx.dtype(&r);
    if !ft.is_float() || cx.shape(&r).iter().product::<usize>() != 1 {
        return Err(cx.err(format!("R must be one float (the learning rate), it is {ft} {:?}", cx.shape(&r))));
    }
    if !cx.dtype(&t).is_int() || cx.shape(&t).iter().product::<usize>() != 1 {
        return Err(cx.err(format!("T must be one integer (the update count), it is {}", cx.dtype(&t))));
    }
    let groups = match cx.op() {
        "Adam" => 4,
        _ => 3,
    };
    let rest: Vec<V> = (2..cx.input_count()).map(|k| cx.need(k)).collect::<Result<_>>()?;
    if rest.is_empty() || !rest.len().is_multiple_of(groups) {
        return Err(cx.err(format!(
            "takes R, T and {groups} lists of n tensors (X, G, {}), got {} tensors",
            if groups == 4 { "V, H" } else { "the state" },
            rest.len()
        )));
    }
    let n = rest.len() / groups;
    let c = Calc { t: ft };
    // R and T as scalars of the tensors' type.
    let r = cx.add1(Op::Reshape { shape: vec![] }, &[r])?;
    let t = cx.add1(Op::Reshape { shape: vec![] }, &[t])?;
    let tf = cx.add1(Op::Cast { to: ft }, std::slice::from_ref(&t))?;
    let zero = cx.constant(Tensor::from_i64(cx.dtype(&t), vec![], vec![0])?);
    let first = cx.binary(BinaryOp::LessOrEqual, t, zero)?;
    let a = &cx.attrs;
    let norm = a.f("norm_coefficient", 0.0) as f64;
    for i in 0..n {
        let (x, g) = (rest[i].clone(), rest[n + i].clone());
        match cx.op() {
            "Adagrad" => {
                let h = rest[2 * n + i].clone();
                let decay = cx.attrs.f("decay_factor", 0.0) as f64;
                let eps = cx.attrs.f("epsilon", 1e-6) as f64;
                // r / (1 + t * decay)
                let td = c.scale(cx, decay, tf.clone())?;
                let one = c.k(cx, 1.0);
                let den = c.add(cx, one, td)?;
                let rate = c.div(cx, r.clone(), den)?;
                let gr = c.regularised(cx, norm, x.clone(), g)?;
                let g2 = c.mul(cx, gr.clone(), gr.clone())?;
                let h_new = c.add(cx, h, g2)?;
                let root = c.sqrt(cx, h_new.clone())?;
                let e = c.k(cx, eps);
                let root = c.add(cx, root, e)?;
                let step = c.mul(cx, rate, gr)?;
                let step = c.div(cx, step, root)?;
                let x_new = c.sub(cx, x, step)?;
                cx.set(i, x_new);
                cx.set(n + i, h_new);
            }
            "Momentum" => {
                let v = rest[2 * n + i].clone();
                for name in ["alpha", "beta", "mode", "norm_coefficient"] {
                    if !cx.attrs.has(name) {
                        return Err(cx.err(format!("the {name} attribute is required")));
                    }
                }
                let (alpha, beta) = (cx.attrs.f("alpha", 0.0) as f64, cx.attrs.f("beta", 0.0) as f64);
                let nesterov = match cx.attrs.s("mode", "").as_str() {
                    "standard" => false,
                    "nesterov" => true,
                    other => return Err(cx.err(format!("mode '{other}' is not standard or nesterov"))),
                };
                let gr = c.regularised(cx, norm, x.clone(), g)?;
                // The gradient's coefficient is 1 at the first update.
                let (b, one) = (c.k(cx, beta), c.k(cx, 1.0));
                let coef = cx.add1(Op::Where, &[first.clone(), one, b])?;
                let av = c.scale(cx, alpha, v)?;
                let bg = c.mul(cx, coef, gr.clone())?;
                let v_new = c.add(cx, av, bg)?;
                let dir = if nesterov {
                    let av_new = c.scale(cx, alpha, v_new.clone())?;
                    c.add(cx, gr, av_new)?
                } else {
                    v_new.clone()
                };
                let step = c.mul(cx, r.clone(), dir)?;
                let x_new = c.sub(cx, x, step)?;
                cx.set(i, x_new);
                cx.set(n + i, v_new);
            }
            "Adam" => {
                let (v, h) = (rest[2 * n + i].clone(), rest[3 * n + i].clone());
                let at = &cx.attrs;
                let (alpha, beta) = (at.f("alpha", 0.9) as f64, at.f("beta", 0.999) as f64);
                let (eps, post) = (at.f("epsilon", 1e-6) as f64, at.f("norm_coefficient_post", 0.0) as f64);
                let gr = c.regularised(cx, norm, x.clone(), g)?;
                let av = c.scale(cx, alpha, v)?;
                let ag = c.scale(cx, 1.0 - alpha, gr.clone())?;
                let v_new = c.add(cx, av, ag)?;
                let g2 = c.mul(cx, gr.clone(), gr)?;
                let bh = c.scale(cx, beta, h)?;
                let bg = c.scale(cx, 1.0 - beta, g2)?;
                let h_new = c.add(cx, bh, bg)?;
                let root = c.sqrt(cx, h_new.clone())?;
                let e = c.k(cx, eps);
                let root = c.add(cx, root, e)?;
                // Bias correction after the first update: r * sqrt(1 - beta^t) / (1 - alpha^t).
                let (ka, kb, one) = (c.k(cx, alpha), c.k(cx, beta), c.k(cx, 1.0));
                let at_ = c.bin(cx, BinaryOp::Pow, ka, tf.clone())?;
                let bt = c.bin(cx, BinaryOp::Pow, kb, tf.clone())?;
                let one_b = c.sub(cx, one.clone(), bt)?;
                let sq = c.sqrt(cx, one_b)?;
                let one_a = c.sub(cx, one, at_)?;
                let corr = c.div(cx, sq, one_a)?;
                let corrected = c.mul(cx, r.clone(), corr)?;
                let rate = cx.add1(Op::Where, &[first.clone(), r.clone(), corrected])?;
                let ratio = c.div(cx, v_new.clone(), root)?;
                let step = c.mul(cx, rate, ratio)?;
                let x_new = c.sub(cx, x, step)?;
                let x_final = c.scale(cx, 1.0 - post, x_new)?;
                cx.set(i, x_final);
                cx.set(n + i, v_new);
                cx.set(2 * n + i, h_new);
            }
            other => return Err(cx.err(format!("{other} is not a training operator"))),
        }
    }
    Ok(())
}
