//! Cast and CastLike, with their float8 attributes `saturate` (opset 19) and `round_mode`
//! (float8e8m0, opset 24).

use super::super::Ctx;
use crate::error::Result;
use crate::half::E8m0Round;
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
    let saturate = cx.attrs.i("saturate", 1) != 0;
    let mode = cx.attrs.s("round_mode", "up");
    let round = E8m0Round::parse(&mode)
        .ok_or_else(|| cx.err(format!("round_mode '{mode}' is not one of up, down, nearest")))?;
    // The attributes matter for float8 targets only (float4e2m1 always saturates).
    let float8 = to.is_narrow_float() && to != DType::F4E2M1;
    let default = (saturate || !float8) && (round == E8m0Round::Up || to != DType::F8E8M0);
    let y = if cx.dtype(&x) == to {
        x
    } else if default {
        cx.add1(Op::Cast { to }, &[x])?
    } else {
        cx.add1(Op::CastWith { to, saturate, round }, &[x])?
    };
    cx.set(0, y);
    Ok(())
}
