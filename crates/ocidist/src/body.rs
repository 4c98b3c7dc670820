//! Reading small response bodies with a hard cap.

use futures_util::StreamExt;

/// Why a capped read failed.
#[derive(Debug)]
pub(crate) enum ReadError {
    /// More than the cap arrived (or was announced); carries what is known of
    /// the size.
    TooLarge(u64),
    /// The transport failed mid-body.
    Transport(reqwest::Error),
}

/// Reads a whole body of at most `cap` bytes, refusing a larger announced
/// `Content-Length` without reading and stopping as soon as the cap is
/// passed.
pub(crate) async fn read_capped(
    response: reqwest::Response,
    cap: u64,
) -> Result<Vec<u8>, ReadError> {
    if let Some(length) = response.content_length()
        && length > cap
    {
        return Err(ReadError::TooLarge(length));
    }
    let mut stream = response.bytes_stream();
    let mut bytes = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(ReadError::Transport)?;
        if (bytes.len() + chunk.len()) as u64 > cap {
            return Err(ReadError::TooLarge((bytes.len() + chunk.len()) as u64));
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}
