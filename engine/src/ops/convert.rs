//! Element type conversion (`Cast`).

use super::{Check, In, Infer, Op};

pub(super) fn infer(op: &Op, ins: &[In]) -> Infer {
    let c = Check { ins };
    c.arity(1, 1)?;
    let Op::Cast { to } = op else { unreachable!("convert family") };
    Ok(vec![(*to, c.shape(0).to_vec())])
}
