// Prelude of every poolpipe kernel module: the engine places it before each family file
// (it is a prelude, not a template: no text is substituted).
//
// Parameters: every dispatch gets 64 words (256 bytes) in a uniform buffer; each kernel
// documents which word holds what and reads them with pu/pi/pf.

struct Params {
    v: array<vec4<u32>, 16>,
}

@group(0) @binding(0) var<uniform> P: Params;

fn pu(i: u32) -> u32 {
    return P.v[i / 4u][i % 4u];
}

fn pi(i: u32) -> i32 {
    return bitcast<i32>(P.v[i / 4u][i % 4u]);
}

fn pf(i: u32) -> f32 {
    return bitcast<f32>(P.v[i / 4u][i % 4u]);
}

// Invocations per workgroup (1-D kernels).
override WG: u32 = 64u;

// Activation applied at write-back: 0 none, 1 relu, 2 leaky relu (a = slope), 3 clip [a, b],
// 4 sigmoid, 5 hard sigmoid (a*x + b), 6 hard swish, 7 silu, 8 gelu (erf), 9 gelu (tanh),
// 10 tanh, 11 erf.
override ACT: u32 = 0u;

// Linear index of a workgroup in a (x, y) grid: grids fold into 2-D when a dispatch needs
// more than the per-dimension limit of workgroups.
fn group_index(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return wid.y * nwg.x + wid.x;
}

// erf with absolute error below 1.5e-7 (Abramowitz and Stegun 7.1.26).
fn erf_approx(x: f32) -> f32 {
    let s = sign(x);
    let a = abs(x);
    let t = 1.0 / (1.0 + 0.3275911 * a);
    let y = 1.0 - (((((1.061405429 * t - 1.453152027) * t) + 1.421413741) * t - 0.284496736) * t
        + 0.254829592) * t * exp(-a * a);
    return s * y;
}

fn sigmoid(x: f32) -> f32 {
    return 1.0 / (1.0 + exp(-x));
}

fn act(x: f32, a: f32, b: f32) -> f32 {
    switch ACT {
        case 1u: { return max(x, 0.0); }
        case 2u: { return select(a * x, x, x >= 0.0); }
        case 3u: { return min(max(x, a), b); }
        case 4u: { return sigmoid(x); }
        case 5u: { return clamp(a * x + b, 0.0, 1.0); }
        case 6u: { return x * clamp(x / 6.0 + 0.5, 0.0, 1.0); }
        case 7u: { return x * sigmoid(x); }
        case 8u: { return 0.5 * x * (1.0 + erf_approx(x * 0.70710678118654752)); }
        case 9u: {
            let u = 0.7978845608028654 * (x + 0.044715 * x * x * x);
            return 0.5 * x * (1.0 + tanh(clamp(u, -15.0, 15.0)));
        }
        case 10u: { return tanh(clamp(x, -15.0, 15.0)); }
        case 11u: { return erf_approx(x); }
        default: { return x; }
    }
}

fn act4(v: vec4<f32>, a: f32, b: f32) -> vec4<f32> {
    return vec4<f32>(act(v.x, a, b), act(v.y, a, b), act(v.z, a, b), act(v.w, a, b));
}
