//! Frames: a u32 big-endian body length, then the body (one protobuf message).
//!
//! The length is checked against the limit before a single body byte is read or
//! allocated, so a peer cannot make the reader buffer more than the limit.

use bytes::{Bytes, BytesMut};
use prost::Message;
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Why a frame could not be read or decoded.
#[derive(Debug, Error)]
pub enum FrameError {
    #[error("frame of {len} bytes is over the limit of {max} bytes")]
    TooLarge { len: usize, max: usize },
    #[error("stream ended in the middle of a frame")]
    Truncated,
    #[error("frame is not a valid message: {0}")]
    Malformed(#[from] prost::DecodeError),
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}

/// Encodes `message` as one frame: length prefix and body.
pub fn encode<M: Message>(message: &M) -> Bytes {
    let len = message.encoded_len();
    let mut buf = BytesMut::with_capacity(4 + len);
    buf.extend_from_slice(&(len as u32).to_be_bytes());
    message
        .encode(&mut buf)
        .expect("a BytesMut sized to encoded_len has room");
    buf.freeze()
}

/// Decodes one frame body.
pub fn decode<M: Message + Default>(body: &[u8]) -> Result<M, FrameError> {
    Ok(M::decode(body)?)
}

/// Reads one frame body. `Ok(None)` means the stream ended cleanly before a frame began.
pub async fn read_frame<R: AsyncRead + Unpin>(
    reader: &mut R,
    max: usize,
) -> Result<Option<Bytes>, FrameError> {
    let Some(len) = read_frame_len(reader, max).await? else {
        return Ok(None);
    };
    read_frame_body(reader, len).await.map(Some)
}

/// Reads a frame's length prefix: `None` at a clean end of stream, an error
/// past `max` (the body is not read).
pub async fn read_frame_len<R: AsyncRead + Unpin>(
    reader: &mut R,
    max: usize,
) -> Result<Option<usize>, FrameError> {
    let mut len_buf = [0u8; 4];
    let mut filled = 0;
    while filled < len_buf.len() {
        let n = reader.read(&mut len_buf[filled..]).await?;
        if n == 0 {
            return if filled == 0 {
                Ok(None)
            } else {
                Err(FrameError::Truncated)
            };
        }
        filled += n;
    }
    let len = u32::from_be_bytes(len_buf) as usize;
    if len > max {
        return Err(FrameError::TooLarge { len, max });
    }
    Ok(Some(len))
}

/// Reads a frame's body of `len` bytes (as [`read_frame_len`] returned it).
pub async fn read_frame_body<R: AsyncRead + Unpin>(
    reader: &mut R,
    len: usize,
) -> Result<Bytes, FrameError> {
    // The buffer grows as bytes arrive: a declared length alone commits
    // no memory.
    let mut body = Vec::with_capacity(len.min(64 * 1024));
    let mut limited = reader.take(len as u64);
    limited.read_to_end(&mut body).await?;
    if body.len() < len {
        return Err(FrameError::Truncated);
    }
    Ok(Bytes::from(body))
}

/// Reads and decodes one message. `Ok(None)` means the stream ended cleanly.
pub async fn read_message<M: Message + Default, R: AsyncRead + Unpin>(
    reader: &mut R,
    max: usize,
) -> Result<Option<M>, FrameError> {
    match read_frame(reader, max).await? {
        Some(body) => decode(&body).map(Some),
        None => Ok(None),
    }
}

/// Writes `message` as one frame.
pub async fn write_frame<M: Message, W: AsyncWrite + Unpin>(
    writer: &mut W,
    message: &M,
) -> Result<(), FrameError> {
    writer.write_all(&encode(message)).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v1::{Request, request};

    fn challenge() -> Request {
        Request {
            kind: Some(request::Kind::Challenge(Default::default())),
        }
    }

    #[tokio::test]
    async fn a_frame_round_trips() {
        let bytes = encode(&challenge());
        let mut reader = &bytes[..];
        let got: Request = read_message(&mut reader, 1024).await.unwrap().unwrap();
        assert_eq!(got, challenge());
        assert!(read_frame(&mut reader, 1024).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn an_oversized_length_is_refused_before_reading_the_body() {
        let mut bytes = (2_000_000u32).to_be_bytes().to_vec();
        bytes.extend_from_slice(b"short");
        let err = read_frame(&mut &bytes[..], 1024).await.unwrap_err();
        assert!(matches!(
            err,
            FrameError::TooLarge {
                len: 2_000_000,
                max: 1024
            }
        ));
    }

    #[tokio::test]
    async fn a_truncated_frame_is_an_error() {
        let bytes = encode(&Request {
            kind: Some(request::Kind::Login(crate::v1::Login {
                username: "alice".into(),
                signature: vec![7; 64].into(),
            })),
        });
        for cut in [2, bytes.len() - 1] {
            assert!(matches!(
                read_frame(&mut &bytes[..cut], 1024).await,
                Err(FrameError::Truncated)
            ));
        }
    }

    #[tokio::test]
    async fn garbage_is_malformed_not_a_panic() {
        let body = [0xffu8; 16];
        let mut bytes = (body.len() as u32).to_be_bytes().to_vec();
        bytes.extend_from_slice(&body);
        let got: Result<Option<Request>, _> = read_message(&mut &bytes[..], 1024).await;
        assert!(matches!(got, Err(FrameError::Malformed(_))));
    }
}
