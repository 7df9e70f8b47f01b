//! Engine boundary tensors to and from transport frames. The precisions map one to one
//! (fp16 to `Dtype::F16`, fp32 to `Dtype::F32`, int32 words to `Dtype::I32`); outgoing bytes
//! move without a copy.

use bytes::Bytes;
use poolpipe_engine::boundary::{Boundary, Precision};
use poolpipe_transport::frame::{Dtype, Frame, TensorInfo};

/// The frame tensors and payloads of boundary tensors (no copy of the bytes).
pub fn to_wire(tensors: Vec<Boundary>) -> (Vec<TensorInfo>, Vec<Bytes>) {
    tensors
        .into_iter()
        .map(|b| {
            let dtype = match b.precision {
                Precision::F16 => Dtype::F16,
                Precision::F32 => Dtype::F32,
                Precision::I32 => Dtype::I32,
            };
            let info = TensorInfo { name: b.name, dtype, dims: b.shape.iter().map(|&d| d as u64).collect() };
            (info, Bytes::from(b.bytes))
        })
        .unzip()
}

/// The boundary tensors of a received frame (the decoder has checked that every payload
/// matches its shape and dtype).
pub fn from_wire(frame: &Frame) -> Result<Vec<Boundary>, String> {
    frame
        .header
        .tensors
        .iter()
        .zip(&frame.payloads)
        .map(|(t, p)| {
            let shape = t
                .dims
                .iter()
                .map(|&d| usize::try_from(d).map_err(|_| format!("tensor '{}': dimension {d} is too large", t.name)))
                .collect::<Result<Vec<usize>, String>>()?;
            let precision = match t.dtype {
                Dtype::F16 => Precision::F16,
                Dtype::F32 => Precision::F32,
                Dtype::I32 => Precision::I32,
            };
            Ok(Boundary { name: t.name.clone(), shape, precision, bytes: p.to_vec() })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use poolpipe_engine::{Rng, Tensor};
    use poolpipe_transport::frame::{BatchHeader, FrameLimits, decode, encode};

    #[test]
    fn boundaries_survive_a_frame_round_trip() {
        let mut rng = Rng::new(3);
        let a = Boundary::from_tensor("cut_1", &Tensor::random(vec![2, 4, 3, 3], &mut rng, -1.0, 1.0), Precision::F16);
        let b = Boundary::from_tensor("logits", &Tensor::random(vec![2, 10], &mut rng, -1.0, 1.0), Precision::F32);
        let (tensors, payloads) = to_wire(vec![a.clone(), b.clone()]);
        let header = BatchHeader { model: 1, batch: 2, stage: 1, requests: vec![], route: vec![], tensors };
        let frame = decode(encode(&header, &payloads).unwrap(), &FrameLimits::default()).unwrap();
        assert_eq!(from_wire(&frame).unwrap(), vec![a, b]);
    }
}
