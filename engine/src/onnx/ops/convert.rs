//! Cast and CastLike.

use super::super::Ctx;
use crate::error::Result;
use crate::ops::Op;
use crate::tensor::DType;

pub(super) fn map(cx: &mut Ctx) -> Result<()> {
    let x = cx.need(0)?;
    let to = match cx.op() {
        "Cast" => {
            let code = cx.attrs.i("to", 0) as i32;
            DType::from_onnx(code)
                .ok_or_else(|| cx.err(format!("casting to {} is not supported", DType::onnx_name(code))))?
        }
        _ => {
            let like = cx.need(1)?;
            cx.dtype(&like)
        }
    };
    let y = if cx.dtype(&x) == to { x } else { cx.add1(Op::Cast { to }, &[x])? };
    cx.set(0, y);
    Ok(())
}
