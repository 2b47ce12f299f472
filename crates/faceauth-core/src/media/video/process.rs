//! The decoder process (FFmpeg or FFprobe): started under an address-space limit
//! with a clean environment, held to a wall-clock limit, its output bounded and read
//! (FFmpeg's frames as PPMs, one by one).

use std::path::Path;
use std::process::Stdio;

use image::RgbImage;
use tokio::io::AsyncReadExt;
use tokio::process::{ChildStderr, ChildStdout, Command};

use super::super::MediaError;
use super::VideoLimits;

/// Starts a decoder under `ulimit -v`, with a clean environment, killed when dropped.
fn spawn_limited(
    program: &Path,
    args: &[String],
    limits: &VideoLimits,
) -> Result<(tokio::process::Child, ChildStdout, ChildStderr), MediaError> {
    let kib = (limits.decoder_memory_bytes / 1024).max(1);
    let mut child = Command::new("/bin/sh")
        .arg("-c")
        .arg(format!("ulimit -v {kib} && exec \"$0\" \"$@\""))
        .arg(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| MediaError::DecoderUnavailable(format!("{}: {e}", program.display())))?;
    let stdout = child.stdout.take().ok_or_else(|| MediaError::DecoderUnavailable("no stdout".into()))?;
    let stderr = child.stderr.take().ok_or_else(|| MediaError::DecoderUnavailable("no stderr".into()))?;
    Ok((child, stdout, stderr))
}

/// The first 64 KiB of a decoder's messages.
async fn read_messages(stderr: &mut ChildStderr) -> Vec<u8> {
    let mut err = Vec::new();
    // An error reading them leaves what was read: the exit status decides.
    let _ = stderr.take(64 * 1024).read_to_end(&mut err).await;
    err
}

/// Waits for the decoder; its first message line when it failed.
async fn finished(child: &mut tokio::process::Child, messages: &[u8]) -> Result<(), MediaError> {
    let status = child.wait().await.map_err(|e| MediaError::DecoderUnavailable(e.to_string()))?;
    if !status.success() {
        let message = String::from_utf8_lossy(messages);
        let first = message.lines().next().unwrap_or("decoder failed").to_string();
        if status.code() == Some(127) {
            return Err(MediaError::DecoderUnavailable(first));
        }
        return Err(MediaError::InvalidVideo(first));
    }
    Ok(())
}

/// Runs a decoder under `ulimit -v` with a wall-clock limit, reading at most `cap`
/// bytes of its output; the process is killed if it overruns either.
pub(super) async fn run_limited(
    program: &std::path::Path,
    args: &[String],
    limits: &VideoLimits,
    cap: usize,
) -> Result<Vec<u8>, MediaError> {
    let (mut child, mut stdout, mut stderr) = spawn_limited(program, args, limits)?;
    let work = async {
        let mut out = Vec::new();
        let mut limited_out = (&mut stdout).take(cap as u64 + 1);
        let (read_out, err) = tokio::join!(limited_out.read_to_end(&mut out), read_messages(&mut stderr));
        read_out.map_err(|e| MediaError::InvalidVideo(e.to_string()))?;
        if out.len() > cap {
            return Err(MediaError::VideoTooLarge("decoder output over its limit".into()));
        }
        finished(&mut child, &err).await?;
        Ok(out)
    };
    match tokio::time::timeout(limits.decoder_timeout, work).await {
        Ok(result) => result,
        // The child is killed when dropped.
        Err(_) => Err(MediaError::DecoderTimeout(limits.decoder_timeout.as_secs())),
    }
}

/// Like `run_limited`, for FFmpeg's PPM frames: each frame is handed to `on_frame`
/// as it comes, so that it can be analysed while the next is decoded (one frame in
/// memory at a time, not the clip's); `on_frame` returns `false` to stop (the
/// decoder is then killed).
pub(super) async fn run_frames(
    program: &Path,
    args: &[String],
    limits: &VideoLimits,
    cap: usize,
    max_side: u32,
    on_frame: impl FnMut(RgbImage) -> bool,
) -> Result<(), MediaError> {
    let (mut child, mut stdout, mut stderr) = spawn_limited(program, args, limits)?;
    let work = async {
        let (read, err) =
            tokio::join!(read_ppm_frames(&mut stdout, cap, max_side, on_frame), read_messages(&mut stderr));
        match read? {
            // The caller stopped: the child is killed when dropped.
            ReadEnd::Stopped => Ok(()),
            ReadEnd::Finished => finished(&mut child, &err).await,
        }
    };
    match tokio::time::timeout(limits.decoder_timeout, work).await {
        Ok(result) => result,
        // The child is killed when dropped.
        Err(_) => Err(MediaError::DecoderTimeout(limits.decoder_timeout.as_secs())),
    }
}

/// How reading the frames ended.
enum ReadEnd {
    /// The output was read to its end.
    Finished,
    /// The caller wanted no more frames.
    Stopped,
}

/// Reads FFmpeg's image2pipe PPM output (binary P6, maxval 255, one header per frame)
/// to its end, at most `cap` bytes, handing each frame to `on_frame`: the frames
/// before anything else, a frame larger than `max_side`, or a truncated frame; the
/// rest is read and dropped.
async fn read_ppm_frames<R: tokio::io::AsyncRead + Unpin>(
    reader: R,
    cap: usize,
    max_side: u32,
    mut on_frame: impl FnMut(RgbImage) -> bool,
) -> Result<ReadEnd, MediaError> {
    let mut reader = tokio::io::BufReader::with_capacity(64 * 1024, reader.take(cap as u64 + 1));
    let read_error = |e: std::io::Error| MediaError::InvalidVideo(e.to_string());
    let mut header = Vec::with_capacity(32);
    'frames: loop {
        // The header, byte by byte from the buffer: "P6", three numbers, one whitespace.
        header.clear();
        let (width, height) = loop {
            let mut byte = [0u8];
            if reader.read(&mut byte).await.map_err(read_error)? == 0 {
                break 'frames;
            }
            header.push(byte[0]);
            if let Some((w, h, end)) = ppm_header(&header)
                && end == header.len()
            {
                break (w, h);
            }
            if header.len() > 32 {
                break 'frames;
            }
        };
        if width == 0 || height == 0 || width > max_side || height > max_side {
            break;
        }
        let mut pixels = vec![0u8; width as usize * height as usize * 3];
        match reader.read_exact(&mut pixels).await {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(read_error(e)),
        }
        match RgbImage::from_raw(width, height, pixels) {
            Some(frame) => {
                if !on_frame(frame) {
                    return Ok(ReadEnd::Stopped);
                }
            }
            None => break,
        }
    }
    // Whatever follows is drained (the decoder must not block on a full pipe).
    tokio::io::copy(&mut reader, &mut tokio::io::sink()).await.map_err(read_error)?;
    let read = reader.into_inner();
    if read.limit() == 0 {
        return Err(MediaError::VideoTooLarge("decoder output over its limit".into()));
    }
    Ok(ReadEnd::Finished)
}

/// `P6 <width> <height> 255` and the single whitespace byte after it (FFmpeg writes
/// no comments): (width, height, offset of the pixel data).
fn ppm_header(bytes: &[u8]) -> Option<(u32, u32, usize)> {
    if !bytes.starts_with(b"P6") {
        return None;
    }
    let mut pos = 2;
    let mut fields = [0u32; 3];
    for field in &mut fields {
        while bytes.get(pos)?.is_ascii_whitespace() {
            pos += 1;
        }
        let digits = bytes[pos..].iter().take_while(|b| b.is_ascii_digit()).count();
        if digits == 0 || digits > 6 {
            return None;
        }
        *field = std::str::from_utf8(&bytes[pos..pos + digits]).ok()?.parse().ok()?;
        pos += digits;
    }
    if fields[2] != 255 || !bytes.get(pos)?.is_ascii_whitespace() {
        return None;
    }
    Some((fields[0], fields[1], pos + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_frames(stream: Vec<u8>, cap: usize) -> Result<Vec<RgbImage>, MediaError> {
        let runtime = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
        let mut frames = Vec::new();
        runtime.block_on(read_ppm_frames(&stream[..], cap, 1280, |f| {
            frames.push(f);
            true
        }))?;
        Ok(frames)
    }

    #[test]
    fn reads_concatenated_ppms() {
        let one = |w: u32, h: u32, v: u8| {
            let mut f = format!("P6\n{w} {h}\n255\n").into_bytes();
            f.extend(std::iter::repeat_n(v, (w * h * 3) as usize));
            f
        };
        let mut stream = one(3, 2, 200);
        stream.extend(one(2, 2, 10));
        stream.extend(&one(4, 4, 7)[..20]); // a truncated third
        let frames = read_frames(stream.clone(), 1 << 20).expect("read");
        assert_eq!(frames.len(), 2);
        assert_eq!(frames[0].dimensions(), (3, 2));
        assert_eq!(frames[1].get_pixel(1, 1).0, [10, 10, 10]);
        // Larger than allowed, or not a PPM: nothing more is read.
        assert!(read_frames(one(3000, 1, 0), 1 << 20).expect("read").is_empty());
        assert!(read_frames(b"P5\n1 1\n255\n\0".to_vec(), 1 << 20).expect("read").is_empty());
        assert!(read_frames(b"P6\n1 1\n65535\n\0\0\0\0\0\0".to_vec(), 1 << 20).expect("read").is_empty());
        // More output than the cap is refused, even after a bad header.
        assert!(matches!(read_frames(stream.clone(), stream.len() - 1), Err(MediaError::VideoTooLarge(_))));
        assert_eq!(read_frames(stream.clone(), stream.len()).expect("read").len(), 2);
        // The caller may stop after any frame.
        let runtime = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
        let mut seen = 0;
        let end = runtime.block_on(read_ppm_frames(&stream[..], 1 << 20, 1280, |_| {
            seen += 1;
            false
        }));
        assert!(matches!(end, Ok(ReadEnd::Stopped)) && seen == 1);
        let mut junk = b"P5".to_vec();
        junk.extend(std::iter::repeat_n(0, 100));
        assert!(matches!(read_frames(junk, 50), Err(MediaError::VideoTooLarge(_))));
    }
}
