//! Request bodies into uploads: the body is read a frame at a time (a
//! client that sends too slowly is cut by the admission layer, which
//! drops this), and written to the upload in 1 MiB pieces on the blocking
//! pool, so no thread waits on the client and memory per upload stays
//! bounded (two pieces: the next one fills from the network while the
//! last one is hashed and written; the two buffers are reused, never
//! reallocated).

use axum::body::Body;
use axum::http::StatusCode;
use http_body_util::BodyExt;
use kist::Writer;

use super::blocking;
use super::errors::Failure;

/// How much of a body is gathered before it is written.
const PIECE: usize = 1 << 20;

/// Appends `body` to `writer`; the writer and the bytes appended. What was
/// written before a failure (or a cut) stays in the upload: it resumes at
/// its offset.
pub async fn append(writer: Writer, mut body: Body) -> Result<(Writer, u64), Failure> {
    let mut idle = Some((writer, Vec::with_capacity(PIECE)));
    let mut writing: Option<blocking::Running<(Writer, Vec<u8>)>> = None;
    let mut piece = Vec::with_capacity(PIECE);
    let mut written = 0u64;
    loop {
        let done = match next_data(&mut body).await {
            Some(Ok(bytes)) => {
                piece.extend_from_slice(&bytes);
                false
            }
            Some(Err(e)) => {
                return Err(Failure::new(
                    StatusCode::BAD_REQUEST,
                    "BLOB_UPLOAD_INVALID",
                    format!("reading the body: {e}"),
                ));
            }
            None => true,
        };
        if piece.len() >= PIECE || (done && !piece.is_empty()) {
            // The writer comes back with the buffer it wrote from.
            let (mut writer, mut spare) = match writing.take() {
                Some(running) => blocking::join(running).await?,
                None => idle.take().expect("a writer is idle or writing"),
            };
            spare.clear();
            let data = std::mem::replace(&mut piece, spare);
            written += data.len() as u64;
            writing = Some(blocking::spawn(move || {
                writer.write_all(&data)?;
                Ok((writer, data))
            }));
        }
        if done {
            let (writer, _) = match writing.take() {
                Some(running) => blocking::join(running).await?,
                None => idle.take().expect("a writer is idle or writing"),
            };
            return Ok((writer, written));
        }
    }
}

/// The next data of `body` (trailers count as no data).
async fn next_data(body: &mut Body) -> Option<Result<axum::body::Bytes, axum::Error>> {
    let frame = body.frame().await?;
    Some(frame.map(|frame| frame.into_data().unwrap_or_default()))
}
