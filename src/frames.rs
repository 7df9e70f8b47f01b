//! Camera frames and tensor files as model inputs: decode an image (PNG, JPEG, BMP, PNM),
//! fit it to the model's input (resize to cover, centre crop) and normalise it per a preset,
//! or read a raw tensor (.npy, .npz).
//!
//! Presets (what `--preset` accepts):
//! - `imagenet` (default): RGB in [0, 1], then per channel `(x - mean) / std` with
//!   mean (0.485, 0.456, 0.406) and std (0.229, 0.224, 0.225), the torchvision convention;
//! - `unit`: RGB in [0, 1];
//! - `raw`: RGB in [0, 255], no normalisation (Caffe-style exports that subtract means inside).
//!
//! Single-channel models get the luma (ITU-R BT.601) with the mean and std of the preset's
//! first channel. Images are resized with a triangle (bilinear) filter so that they cover the
//! model's H x W with their aspect ratio kept, then the centre H x W is cut out.

use std::path::Path;

use anyhow::{Context, Result, bail};
use poolpipe_engine::{DType, Tensor};

/// How pixels become input values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Preset {
    /// RGB in [0, 1] normalised with the ImageNet mean and std.
    Imagenet,
    /// RGB in [0, 1].
    Unit,
    /// RGB in [0, 255].
    Raw,
}

impl Preset {
    fn mean_std(self) -> ([f32; 3], [f32; 3], f32) {
        match self {
            Preset::Imagenet => ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225], 1.0 / 255.0),
            Preset::Unit => ([0.0; 3], [1.0; 3], 1.0 / 255.0),
            Preset::Raw => ([0.0; 3], [1.0; 3], 1.0),
        }
    }
}

/// True when the path's extension is an image format this module decodes.
pub fn is_image(path: &Path) -> bool {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
    matches!(ext.as_str(), "png" | "jpg" | "jpeg" | "bmp" | "ppm" | "pgm" | "pnm")
}

/// Decodes an image and turns it into one frame of `dims` = [C, H, W] (C is 1 or 3).
pub fn image_frame(path: &Path, dims: &[usize], preset: Preset) -> Result<Tensor> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot open the image {}", path.display()))?;
    image_bytes_frame(&bytes, &format!("the image {}", path.display()), dims, preset)
}

/// Decodes an image held in memory (`what` names it in errors) into one frame of `dims` =
/// [C, H, W] (C is 1 or 3): scaled to cover H x W, centre cut, normalised per `preset`.
pub fn image_bytes_frame(bytes: &[u8], what: &str, dims: &[usize], preset: Preset) -> Result<Tensor> {
    let &[c, h, w] = dims else {
        bail!(
            "the model's input has shape {dims:?} per frame, not [channels, height, width], so {what} cannot feed it"
        );
    };
    if c != 1 && c != 3 {
        bail!("the model takes {c} channels per frame; images give 1 (gray) or 3 (RGB), so {what} cannot feed it");
    }
    let img = image::ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .with_context(|| format!("cannot read {what}"))?
        .decode()
        .with_context(|| format!("cannot decode {what} (PNG, JPEG, BMP or PNM expected)"))?;
    let (iw, ih) = (img.width() as usize, img.height() as usize);
    if iw == 0 || ih == 0 {
        bail!("{what} is empty");
    }
    // Scale so that the image covers h x w, then cut the centre.
    let scale = (h as f64 / ih as f64).max(w as f64 / iw as f64);
    let (sw, sh) =
        (((iw as f64 * scale).round() as u32).max(w as u32), ((ih as f64 * scale).round() as u32).max(h as u32));
    let rgb = img.to_rgb8();
    let resized = image::imageops::resize(&rgb, sw, sh, image::imageops::FilterType::Triangle);
    let (x0, y0) = ((sw as usize - w) / 2, (sh as usize - h) / 2);
    let (mean, std, scale_px) = preset.mean_std();
    let mut data = vec![0f32; c * h * w];
    for y in 0..h {
        for x in 0..w {
            let p = resized.get_pixel((x0 + x) as u32, (y0 + y) as u32).0;
            if c == 3 {
                for ch in 0..3 {
                    data[(ch * h + y) * w + x] = (p[ch] as f32 * scale_px - mean[ch]) / std[ch];
                }
            } else {
                let luma = 0.299 * p[0] as f32 + 0.587 * p[1] as f32 + 0.114 * p[2] as f32;
                data[y * w + x] = (luma * scale_px - mean[0]) / std[0];
            }
        }
    }
    Ok(Tensor::new(vec![1, c, h, w], data)?)
}

/// Reads a tensor file as frames of `dims` (a `None` dimension takes any size): a tensor of
/// shape `dims` is one frame, one of shape [N, dims...] is N frames. Returns [N, dims...] of
/// the element type `dtype`: a tensor of another float type is converted, as is one of
/// another integer type whose values fit; other mismatches are errors.
pub fn tensor_frames(path: &Path, t: Tensor, dims: &[Option<usize>], dtype: DType) -> Result<Tensor> {
    let t = fit_dtype(path, t, dtype)?;
    let shape = t.shape().to_vec();
    let fits = |s: &[usize]| s.len() == dims.len() && s.iter().zip(dims).all(|(a, b)| b.is_none_or(|b| b == *a));
    if fits(&shape) {
        let mut s = vec![1];
        s.extend_from_slice(&shape);
        return Ok(t.reshaped(s)?);
    }
    if shape.len() == dims.len() + 1 && fits(&shape[1..]) && shape[0] > 0 {
        return Ok(t);
    }
    let show: Vec<String> = dims.iter().map(|d| d.map_or("?".to_string(), |v| v.to_string())).collect();
    bail!(
        "{} holds a tensor of shape {shape:?}; the model takes frames of [{}] \
         (give [{}] for one frame or [N, {}] for N)",
        path.display(),
        show.join(", "),
        show.join(", "),
        show.join(", ")
    )
}

/// The tensor in the model input's element type, or an error naming both types.
fn fit_dtype(path: &Path, t: Tensor, dtype: DType) -> Result<Tensor> {
    let have = t.dtype();
    if have == dtype {
        return Ok(t);
    }
    if have.is_float() && dtype.is_float() {
        return Ok(t.cast(dtype));
    }
    if have.is_int() && dtype.is_int() {
        let c = t.cast(dtype);
        if c.to_i64s() == t.to_i64s() {
            return Ok(c);
        }
        bail!("{} holds {have} values that do not fit the model's {dtype} input", path.display());
    }
    bail!("{} holds {have} values; the model's input takes {dtype}", path.display())
}

/// Stacks frames ([n_i, dims...] each, one element type) into one batch.
pub fn stack(frames: &[Tensor]) -> Result<Tensor> {
    let first = frames.first().context("no frames")?;
    let per = first.shape()[1..].to_vec();
    let mut src = Vec::new();
    let mut n = 0;
    for (k, f) in frames.iter().enumerate() {
        if f.shape()[1..] != per[..] {
            bail!("frames of shapes {:?} and {:?} cannot form one batch", first.shape(), f.shape());
        }
        n += f.shape()[0];
        src.extend((0..f.len()).map(|i| (k, i)));
    }
    let parts: Vec<&Tensor> = frames.iter().collect();
    Ok(Tensor::select(first.dtype(), [vec![n], per].concat(), &parts, &src)?)
}

/// Repeats a batch of one frame `batch` times.
pub fn repeat(t: &Tensor, batch: usize) -> Result<Tensor> {
    let per = t.shape()[1..].to_vec();
    let src: Vec<Option<usize>> = (0..batch).flat_map(|_| (0..t.len()).map(Some)).collect();
    Ok(t.gather([vec![batch], per].concat(), &src, 0.0)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_is_cropped_and_normalised() {
        let dir = std::env::temp_dir().join(format!("poolpipe-frames-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        // 8 wide x 4 high: left half red, right half blue; a 4x4 centre crop of the 4x4 cover
        // keeps columns 2..6.
        let img = image::RgbImage::from_fn(
            8,
            4,
            |x, _| if x < 4 { image::Rgb([255, 0, 0]) } else { image::Rgb([0, 0, 255]) },
        );
        let path = dir.join("f.png");
        img.save(&path).unwrap();
        let t = image_frame(&path, &[3, 4, 4], Preset::Unit).unwrap();
        assert_eq!(t.shape(), &[1, 3, 4, 4]);
        assert_eq!(t.data()[0], 1.0); // red, column 0 of the crop = image column 2
        assert_eq!(t.data()[2 * 16 + 3], 1.0); // blue, column 3 = image column 5
        assert_eq!(t.data()[16], 0.0); // green
        let n = image_frame(&path, &[3, 4, 4], Preset::Imagenet).unwrap();
        assert!((n.data()[0] - (1.0 - 0.485) / 0.229).abs() < 1e-5);
        let g = image_frame(&path, &[1, 4, 8], Preset::Raw).unwrap();
        assert!((g.data()[0] - 0.299 * 255.0).abs() < 1e-3);
        assert!(image_frame(&path, &[4, 4, 4], Preset::Unit).unwrap_err().to_string().contains("4 channels"));
        std::fs::write(dir.join("bad.png"), b"not an image").unwrap();
        let e = format!("{:#}", image_frame(&dir.join("bad.png"), &[3, 4, 4], Preset::Unit).unwrap_err());
        assert!(e.contains("bad.png"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn tensor_frames_take_one_or_many() {
        let p = Path::new("x.npy");
        let d = [Some(2), Some(3)];
        let one = Tensor::new(vec![2, 3], vec![0.0; 6]).unwrap();
        assert_eq!(tensor_frames(p, one, &d, DType::F32).unwrap().shape(), &[1, 2, 3]);
        let many = Tensor::new(vec![4, 2, 3], vec![0.0; 24]).unwrap();
        assert_eq!(tensor_frames(p, many.clone(), &d, DType::F32).unwrap().shape(), &[4, 2, 3]);
        let wrong = Tensor::new(vec![3, 2], vec![0.0; 6]).unwrap();
        let e = tensor_frames(p, wrong, &d, DType::F32).unwrap_err().to_string();
        assert!(e.contains("[3, 2]") && e.contains("[N, 2, 3]"), "{e}");
        // Symbolic dimensions take any size; floats convert, floats never become integers.
        let any = tensor_frames(p, many.clone(), &[None, Some(3)], DType::F16).unwrap();
        assert_eq!((any.shape(), any.dtype()), (&[4, 2, 3][..], DType::F16));
        let e = tensor_frames(p, many, &d, DType::I64).unwrap_err().to_string();
        assert!(e.contains("float32") && e.contains("int64"), "{e}");
        let ints = Tensor::from_i64(DType::I64, vec![2, 3], vec![1, 2, 3, 4, 5, 300]).unwrap();
        assert!(tensor_frames(p, ints.clone(), &d, DType::I32).is_ok());
        assert!(tensor_frames(p, ints, &d, DType::U8).unwrap_err().to_string().contains("do not fit"));
    }
}
