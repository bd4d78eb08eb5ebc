//! The response body type: a complete buffer (Content-Length) or a channel of chunks.

use bytes::Bytes;
use hyper::body::{Frame, SizeHint};
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::sync::mpsc;

/// An item of a streamed body: a chunk, or an error that makes hyper drop the connection
/// without writing the terminating chunk (a mid-stream reset as a client sees it).
pub type Chunk = Result<Bytes, std::io::Error>;

pub enum Body {
    Full(Option<Bytes>),
    /// Chunked: ends cleanly when every sender is dropped.
    Stream(mpsc::Receiver<Chunk>),
}

impl Body {
    pub fn full(data: impl Into<Bytes>) -> Self {
        Body::Full(Some(data.into()))
    }
}

impl hyper::body::Body for Body {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match self.get_mut() {
            Body::Full(data) => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
            Body::Stream(rx) => match rx.poll_recv(cx) {
                Poll::Ready(Some(Ok(d))) => Poll::Ready(Some(Ok(Frame::data(d)))),
                Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e))),
                Poll::Ready(None) => Poll::Ready(None),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self, Body::Full(None))
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Body::Full(Some(d)) => SizeHint::with_exact(d.len() as u64),
            Body::Full(None) => SizeHint::with_exact(0),
            Body::Stream(_) => SizeHint::default(),
        }
    }
}
