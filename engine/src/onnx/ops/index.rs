//! Gather (on constant or computed data and indices).

use super::super::Ctx;
use crate::error::Result;
use crate::ops::Op;

pub(super) fn map(cx: &mut Ctx) -> Result<()> {
    let (data, idx) = (cx.need(0)?, cx.need(1)?);
    let axis = super::axis(cx, cx.attrs.i("axis", 0), cx.rank(&data))?;
    let out = cx.add1(Op::Gather { axis }, &[data, idx])?;
    cx.set(0, out);
    Ok(())
}
