//! Built-in model builders: small CNNs with seeded random weights in the shapes of the
//! families poolpipe serves (a residual classifier, an inverted-residual network with
//! squeeze-excite, a dilated segmentation network with a bilinear head). They need no files,
//! so `poolpipe run` and the tests always have a real graph to execute; ONNX import serves
//! users' own models.

use crate::error::{EngineError, Result};
use crate::graph::{Graph, GraphBuilder, ValueId};
use crate::model::Model;
use crate::ops::*;
use crate::tensor::{Rng, Tensor};

/// Names of the built-in models, with a one-line description each.
pub const BUILTIN: &[(&str, &str)] = &[
    ("resnet-mini", "residual classifier: conv-BN-ReLU stem, max pool, 4 basic blocks, global pool, FC, softmax"),
    ("mobilenet-mini", "inverted residuals: 1x1 expand, depthwise 3x3, squeeze-excite, hard-swish, FC"),
    ("segnet-mini", "segmentation: strided encoder, dilated convs, concat, bilinear upsample to the input size"),
];

/// A built-in model for 3-channel `size` x `size` frames with weights from `seed`, at any
/// batch (the graph of each batch size is built with the same weights).
pub fn builtin(name: &str, size: usize, seed: u64) -> Result<Model> {
    if size < 16 {
        return Err(EngineError::InvalidGraph { graph: name.into(), reason: format!("input size {size} is below 16") });
    }
    let owned = name.to_string();
    Model::batched(name, move |batch| build(&owned, size, seed, batch))
}

/// The graph of a built-in model at one batch size.
fn build(name: &str, size: usize, seed: u64, batch: usize) -> Result<Graph> {
    let mut m = Builder { g: GraphBuilder::new(name), rng: Rng::new(seed), n: 0 };
    let x = m.g.input("frames", &[batch, 3, size, size]);
    let y = match name {
        "resnet-mini" => m.resnet(x)?,
        "mobilenet-mini" => m.mobilenet(x)?,
        "segnet-mini" => m.segnet(x, size)?,
        _ => {
            return Err(EngineError::InvalidGraph {
                graph: name.into(),
                reason: format!(
                    "unknown built-in model; choose one of: {}",
                    BUILTIN.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
                ),
            });
        }
    };
    m.g.output(y);
    m.g.build()
}

struct Builder {
    g: GraphBuilder,
    rng: Rng,
    n: usize,
}

impl Builder {
    fn name(&mut self, base: &str) -> String {
        self.n += 1;
        format!("{base}{}", self.n)
    }

    fn weight(&mut self, name: &str, shape: Vec<usize>, fan_in: usize) -> ValueId {
        let s = (2.0 / fan_in as f32).sqrt();
        let t = Tensor::random(shape, &mut self.rng, -s, s);
        self.g.constant(name, t)
    }

    fn bn(&mut self, x: ValueId, c: usize) -> Result<ValueId> {
        let n = self.name("bn");
        let scale = Tensor::random(vec![c], &mut self.rng, 0.8, 1.2);
        let bias = Tensor::random(vec![c], &mut self.rng, -0.1, 0.1);
        let mean = Tensor::random(vec![c], &mut self.rng, -0.1, 0.1);
        let var = Tensor::random(vec![c], &mut self.rng, 0.5, 1.5);
        let ins = vec![
            x,
            self.g.constant(&format!("{n}.scale"), scale),
            self.g.constant(&format!("{n}.bias"), bias),
            self.g.constant(&format!("{n}.mean"), mean),
            self.g.constant(&format!("{n}.var"), var),
        ];
        self.g.add(&n, Op::BatchNorm { epsilon: 1e-5 }, ins)
    }

    /// conv (no bias) -> BN -> optional activation
    #[allow(clippy::too_many_arguments)]
    fn conv_bn(
        &mut self,
        x: ValueId,
        cin: usize,
        cout: usize,
        k: usize,
        stride: usize,
        dilation: usize,
        groups: usize,
        act: Option<Activation>,
    ) -> Result<ValueId> {
        let n = self.name("conv");
        let w = self.weight(&format!("{n}.weight"), vec![cout, cin / groups, k, k], cin / groups * k * k);
        let p = dilation * (k - 1) / 2;
        let attrs = ConvAttrs {
            stride: vec![stride; 2],
            pads: vec![p; 4],
            dilation: vec![dilation; 2],
            groups,
            activation: None,
        };
        let y = self.g.conv(&n, x, w, None, attrs)?;
        let y = self.bn(y, cout)?;
        match act {
            Some(a) => {
                let n = self.name(a.name());
                self.g.unary(&n, y, a)
            }
            None => Ok(y),
        }
    }

    fn head(&mut self, x: ValueId, c: usize, classes: usize) -> Result<ValueId> {
        let p = self.g.global_pool("pool", x, PoolKind::Average)?;
        let f = self.g.flatten("flatten", p, 1)?;
        let w = self.weight("fc.weight", vec![classes, c], c);
        let b = self.weight("fc.bias", vec![classes], c);
        let y = self.g.gemm("fc", f, w, Some(b), GemmAttrs { trans_b: true, ..Default::default() })?;
        self.g.add("softmax", Op::Softmax { axis: 1, kind: SoftmaxKind::Softmax }, vec![y])
    }

    fn resnet(&mut self, x: ValueId) -> Result<ValueId> {
        let relu = Some(Activation::Relu);
        let mut y = self.conv_bn(x, 3, 16, 3, 2, 1, 1, relu)?;
        let mut pool = PoolAttrs::new(PoolKind::Max, &[3, 3], &[2, 2]);
        pool.pads = vec![1; 4];
        y = self.g.pool("maxpool", y, pool)?;
        let mut c = 16;
        for (cout, stride) in [(16, 1), (32, 2), (32, 1), (64, 2)] {
            let a = self.conv_bn(y, c, cout, 3, stride, 1, 1, relu)?;
            let b = self.conv_bn(a, cout, cout, 3, 1, 1, 1, None)?;
            let skip = if stride != 1 || cout != c { self.conv_bn(y, c, cout, 1, stride, 1, 1, None)? } else { y };
            let n = self.name("add");
            let s = self.g.binary(&n, BinaryOp::Add, b, skip)?;
            let n = self.name("relu");
            y = self.g.unary(&n, s, Activation::Relu)?;
            c = cout;
        }
        self.head(y, c, 10)
    }

    fn squeeze_excite(&mut self, x: ValueId, c: usize) -> Result<ValueId> {
        let n = self.name("se");
        let s = self.g.global_pool(&format!("{n}.pool"), x, PoolKind::Average)?;
        let r = (c / 4).max(4);
        let w1 = self.weight(&format!("{n}.fc1.weight"), vec![r, c, 1, 1], c);
        let b1 = self.weight(&format!("{n}.fc1.bias"), vec![r], c);
        let relu = Some(Activation::Relu);
        let s =
            self.g.conv(&format!("{n}.fc1"), s, w1, Some(b1), ConvAttrs { activation: relu, ..Default::default() })?;
        let w2 = self.weight(&format!("{n}.fc2.weight"), vec![c, r, 1, 1], r);
        let b2 = self.weight(&format!("{n}.fc2.bias"), vec![c], r);
        let s = self.g.conv(&format!("{n}.fc2"), s, w2, Some(b2), ConvAttrs::default())?;
        let s = self.g.unary(&format!("{n}.gate"), s, Activation::HardSigmoid { alpha: 1.0 / 6.0, beta: 0.5 })?;
        self.g.binary(&format!("{n}.scale"), BinaryOp::Mul, x, s)
    }

    fn mobilenet(&mut self, x: ValueId) -> Result<ValueId> {
        let hs = Some(Activation::HardSwish);
        let mut y = self.conv_bn(x, 3, 16, 3, 2, 1, 1, hs)?;
        let mut c = 16;
        // (expansion, out channels, stride, squeeze-excite)
        for (t, cout, stride, se) in [(1, 16, 1, false), (4, 24, 2, false), (3, 24, 1, true), (4, 40, 2, true)] {
            let hidden = c * t;
            let mut h = y;
            if t != 1 {
                h = self.conv_bn(h, c, hidden, 1, 1, 1, 1, hs)?;
            }
            h = self.conv_bn(h, hidden, hidden, 3, stride, 1, hidden, Some(Activation::Clip { min: 0.0, max: 6.0 }))?;
            if se {
                h = self.squeeze_excite(h, hidden)?;
            }
            h = self.conv_bn(h, hidden, cout, 1, 1, 1, 1, None)?;
            if stride == 1 && cout == c {
                let n = self.name("add");
                h = self.g.binary(&n, BinaryOp::Add, h, y)?;
            }
            y = h;
            c = cout;
        }
        y = self.conv_bn(y, c, 96, 1, 1, 1, 1, hs)?;
        self.head(y, 96, 10)
    }

    fn segnet(&mut self, x: ValueId, size: usize) -> Result<ValueId> {
        let relu = Some(Activation::Relu);
        let e1 = self.conv_bn(x, 3, 16, 3, 2, 1, 1, relu)?;
        let e2 = self.conv_bn(e1, 16, 32, 3, 2, 1, 1, relu)?;
        let d1 = self.conv_bn(e2, 32, 32, 3, 1, 2, 1, relu)?;
        let d2 = self.conv_bn(e2, 32, 32, 3, 1, 4, 1, relu)?;
        let cat = self.g.add("aspp.concat", Op::Concat { axis: 1 }, vec![e2, d1, d2])?;
        let f = self.conv_bn(cat, 96, 32, 1, 1, 1, 1, relu)?;
        let w = self.weight("classifier.weight", vec![5, 32, 1, 1], 32);
        let b = self.weight("classifier.bias", vec![5], 32);
        let logits = self.g.conv("classifier", f, w, Some(b), ConvAttrs::default())?;
        let shape = self.g.shape(logits).to_vec();
        let sizes = [shape[0], shape[1], size, size];
        let attrs = ResizeAttrs::to_sizes(ResizeMode::Linear, CoordMode::HalfPixel, &shape, &sizes);
        let up = self.g.add("upsample", Op::Resize(attrs), vec![logits])?;
        self.g.add("softmax", Op::Softmax { axis: 1, kind: SoftmaxKind::Softmax }, vec![up])
    }
}
