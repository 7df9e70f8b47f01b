//! Host ops (their output shapes depend on the data): NonZero, NonMaxSuppression, Unique,
//! TopK. Each is folded when its inputs are known at compile time, else it runs on the host
//! between two device graphs.

use super::super::Ctx;
use crate::error::Result;
use crate::ops::{NmsAttrs, Op};

pub(super) fn map(cx: &mut Ctx) -> Result<()> {
    let n_in = cx.input_count();
    let ins: Vec<_> = (0..n_in).map(|k| cx.input(k)).collect();
    let op = match cx.op() {
        "NonZero" => Op::NonZero,
        "NonMaxSuppression" => {
            Op::NonMaxSuppression(NmsAttrs { center_point_box: cx.attrs.i("center_point_box", 0) != 0 })
        }
        "Unique" => {
            let x = cx.need(0)?;
            let axis =
                if cx.attrs.has("axis") { Some(super::axis(cx, cx.attrs.i("axis", 0), cx.rank(&x))?) } else { None };
            Op::Unique { sorted: cx.attrs.i("sorted", 1) != 0, axis }
        }
        "TopK" => {
            let x = cx.need(0)?;
            let axis = super::axis(cx, cx.attrs.i("axis", -1), cx.rank(&x))?;
            let op = Op::TopK { axis, largest: cx.attrs.i("largest", 1) != 0, sorted: cx.attrs.i("sorted", 1) != 0 };
            if cx.opset() < 10 {
                // k is an attribute before opset 10.
                let k = cx.attrs.i("k", -1);
                let kt = cx.constant(crate::Tensor::ints(&[k]));
                cx.host(op, vec![Some(x), Some(kt)])?;
                return Ok(());
            }
            op
        }
        other => return Err(cx.err(format!("{other} is not a host op"))),
    };
    cx.host(op, ins)
}
