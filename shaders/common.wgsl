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

// Activation (or elementwise function) applied at write-back: 0 none, 1 relu, 2 leaky relu
// (a = slope), 3 clip [a, b], 4 sigmoid, 5 hard sigmoid (a*x + b), 6 hard swish, 7 silu,
// 8 gelu (erf), 9 gelu (tanh), 10 tanh, 11 erf, 12 abs, 13 neg, 14 exp, 15 log, 16 sqrt,
// 17 reciprocal, 18 floor, 19 ceil, 20 round (half to even), 21 sign, 22 sin, 23 cos, 24 tan,
// 25 asin, 26 acos, 27 atan, 28 sinh, 29 cosh, 30 asinh, 31 acosh, 32 atanh, 33 elu (a),
// 34 selu (a, gamma b), 35 celu (a), 36 softplus, 37 softsign, 38 mish, 39 thresholded relu
// (a), 40 shrink (lambda a, bias b), 41 swish (a).
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

// ln(1 + e^x) without losing the small values: max(x, 0) + ln(1 + e^-|x|), the logarithm
// by its series where its argument is tiny.
// tanh keeping its small values (the exponential form loses them): its series below 1e-2.
fn tanh_c(x: f32) -> f32 {
    if (abs(x) < 1e-2) {
        return x * (1.0 - x * x / 3.0);
    }
    return tanh(clamp(x, -15.0, 15.0));
}

fn softplus(x: f32) -> f32 {
    let e = exp(-abs(x));
    let l = select(log(1.0 + e), e * (1.0 - 0.5 * e), e < 1e-4);
    return max(x, 0.0) + l;
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
            return 0.5 * x * (1.0 + tanh_c(u));
        }
        case 10u: { return tanh_c(x); }
        case 11u: { return erf_approx(x); }
        case 12u: { return abs(x); }
        case 13u: { return -x; }
        case 14u: { return exp(x); }
        case 15u: { return log(x); }
        case 16u: { return sqrt(x); }
        case 17u: { return 1.0 / x; }
        case 18u: { return floor(x); }
        case 19u: { return ceil(x); }
        case 20u: { return round(x); }
        case 21u: { return sign(x); }
        case 22u: { return sin(x); }
        case 23u: { return cos(x); }
        case 24u: { return tan(x); }
        case 25u: { return asin(x); }
        case 26u: { return acos(x); }
        case 27u: { return atan(x); }
        case 28u: { return sinh(x); }
        case 29u: { return cosh(x); }
        case 30u: { return asinh(x); }
        case 31u: { return acosh(x); }
        case 32u: { return atanh(x); }
        case 33u: { return select(a * (exp(x) - 1.0), x, x > 0.0); }
        case 34u: { return b * select(a * (exp(x) - 1.0), x, x > 0.0); }
        case 35u: { return max(x, 0.0) + min(0.0, a * (exp(x / a) - 1.0)); }
        case 36u: { return softplus(x); }
        case 37u: { return x / (1.0 + abs(x)); }
        case 38u: { return x * tanh_c(softplus(x)); }
        case 39u: { return select(0.0, x, x > a); }
        case 40u: { return select(select(0.0, x + b, x < -a), x - b, x > a); }
        case 41u: { return x * sigmoid(a * x); }
        default: { return x; }
    }
}

fn act4(v: vec4<f32>, a: f32, b: f32) -> vec4<f32> {
    return vec4<f32>(act(v.x, a, b), act(v.y, a, b), act(v.z, a, b), act(v.w, a, b));
}
