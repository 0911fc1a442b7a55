//! Headless Chromium for the tests of HTML output: the DOM after
//! rendering, and a screenshot decoded to pixels.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// Debian's `chromium`, or `None` (after a note) when it is absent and not
/// required (CAIRN_REQUIRE_SERVERS or CI make it required; .ci/run
/// installs it).
pub fn chromium() -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("chromium"))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        let msg = "chromium is not installed; apt-get install chromium";
        assert!(
            !super::servers_required(),
            "{msg} (required: CAIRN_REQUIRE_SERVERS or CI is set)"
        );
        eprintln!("SKIPPED: {msg}");
    }
    found
}

/// Runs headless Chromium on `page` with `args`, a fresh profile in
/// `scratch`; returns its standard output.
fn run(chromium: &Path, scratch: &Path, page: &Path, args: &[&str]) -> Vec<u8> {
    let out = Command::new(chromium)
        .args(["--headless", "--no-sandbox", "--disable-gpu"])
        .arg(format!(
            "--user-data-dir={}",
            scratch.join("profile").display()
        ))
        .args(args)
        .arg(format!("file://{}", page.display()))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "chromium failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// The DOM of `page` after rendering.
pub fn dump_dom(chromium: &Path, scratch: &Path, page: &Path) -> String {
    String::from_utf8(run(chromium, scratch, page, &["--dump-dom"])).unwrap()
}

/// An RGBA screenshot.
pub struct Image {
    pub width: usize,
    pub height: usize,
    pub rgba: Vec<u8>,
}

impl Image {
    /// Pixels within `tolerance` of `rgb` in every channel.
    pub fn count_near(&self, rgb: [u8; 3], tolerance: u8) -> usize {
        self.rgba
            .chunks_exact(4)
            .filter(|p| (0..3).all(|i| p[i].abs_diff(rgb[i]) <= tolerance))
            .count()
    }

    /// Pixels that are not white.
    pub fn non_white(&self) -> usize {
        self.rgba
            .chunks_exact(4)
            .filter(|p| p[..3] != [255, 255, 255])
            .count()
    }
}

/// A `width`×`height` screenshot of `page`.
pub fn screenshot(chromium: &Path, scratch: &Path, page: &Path, width: u32, height: u32) -> Image {
    let png_path = scratch.join("screenshot.png");
    run(
        chromium,
        scratch,
        page,
        &[
            &format!("--screenshot={}", png_path.display()),
            &format!("--window-size={width},{height}"),
            "--hide-scrollbars",
        ],
    );
    let mut decoder = png::Decoder::new(std::io::BufReader::new(
        std::fs::File::open(&png_path).unwrap(),
    ));
    decoder.set_transformations(png::Transformations::normalize_to_color8());
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    buf.truncate(info.buffer_size());
    let rgba = match info.color_type {
        png::ColorType::Rgba => buf,
        png::ColorType::Rgb => buf
            .chunks_exact(3)
            .flat_map(|p| [p[0], p[1], p[2], 255])
            .collect(),
        other => panic!("unexpected PNG colour type {other:?}"),
    };
    Image {
        width: info.width as usize,
        height: info.height as usize,
        rgba,
    }
}
