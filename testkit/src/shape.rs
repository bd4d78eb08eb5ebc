//! Delivering a response body the way a faulty network or server would: aborted after some bytes, stalled in
//! the middle, or trickled out slowly. Used for streamed watch bodies and for complete bodies alike.

use crate::body::{Body, Chunk};
use crate::faults::Shape;
use bytes::Bytes;
use hyper::Response;
use std::time::Duration;
use tokio::sync::mpsc;

/// Sends body bytes into a streamed body, applying a `Shape`.
pub struct Shaper {
    tx: mpsc::Sender<Chunk>,
    shape: Shape,
    /// Body bytes sent so far.
    sent: usize,
}

impl Shaper {
    pub fn new(tx: mpsc::Sender<Chunk>, shape: Shape) -> Shaper {
        Shaper { tx, shape, sent: 0 }
    }

    /// Sends `data`; false once the client is gone or the stream was aborted.
    pub async fn send(&mut self, mut data: Bytes) -> bool {
        if self.shape.is_plain() {
            return self.tx.send(Ok(data)).await.is_ok();
        }
        loop {
            if let Some(stall) = self.shape.stall.filter(|s| self.sent >= s.at) {
                self.shape.stall = None;
                if !self.pause(stall.ms).await {
                    return false;
                }
            }
            if self.shape.reset_after.is_some_and(|r| self.sent >= r) {
                self.abort().await;
                return false;
            }
            if data.is_empty() {
                return true;
            }
            let mut n = data.len();
            if let Some(s) = self.shape.stall {
                n = n.min(s.at - self.sent);
            }
            if let Some(r) = self.shape.reset_after {
                n = n.min(r - self.sent);
            }
            if let Some(slow) = self.shape.slow {
                n = n.min(slow.bytes);
            }
            if self.tx.send(Ok(data.split_to(n))).await.is_err() {
                return false;
            }
            self.sent += n;
            if let Some(slow) = self.shape.slow
                && !data.is_empty()
                && !self.pause(Some(slow.ms)).await
            {
                return false;
            }
        }
    }

    /// Waits `ms` (None: until the client goes away); false if the client went away meanwhile.
    async fn pause(&self, ms: Option<u64>) -> bool {
        match ms {
            Some(ms) => tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(ms)) => true,
                _ = self.tx.closed() => false,
            },
            None => {
                self.tx.closed().await;
                false
            }
        }
    }

    /// Resolves when the client went away.
    pub async fn closed(&self) {
        self.tx.closed().await
    }

    /// Ends the stream without the terminating chunk.
    pub async fn abort(&mut self) {
        // hyper discards buffered output when the body fails, so let the bytes already queued reach the socket
        // first; the client then sees a truncated stream.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let err = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "injected reset");
        let _ = self.tx.send(Err(err)).await;
    }
}

/// Replaces a complete body with a stream delivered according to `shape` (a plain shape leaves it as is).
pub fn shape_body(resp: Response<Body>, shape: Shape) -> Response<Body> {
    if shape.is_plain() {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    let data = match body {
        Body::Full(d) => d.unwrap_or_default(),
        stream => return Response::from_parts(parts, stream),
    };
    let (tx, rx) = mpsc::channel(2);
    tokio::spawn(async move {
        let mut shaper = Shaper::new(tx, shape);
        // A body that ends before the reset point still ends with a reset, as a cut connection does.
        if shaper.send(data).await && shape.reset_after.is_some() {
            shaper.abort().await;
        }
    });
    parts.headers.remove("content-length");
    Response::from_parts(parts, Body::Stream(rx))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::faults::{Slow, Stall};
    use std::time::Instant;

    async fn collect(mut rx: mpsc::Receiver<Chunk>) -> (Vec<Vec<u8>>, bool) {
        let mut chunks = Vec::new();
        while let Some(c) = rx.recv().await {
            match c {
                Ok(b) => chunks.push(b.to_vec()),
                Err(_) => return (chunks, true),
            }
        }
        (chunks, false)
    }

    #[tokio::test]
    async fn stall_pauses_at_the_offset_then_goes_on() {
        let (tx, rx) = mpsc::channel(16);
        let shape = Shape {
            stall: Some(Stall {
                at: 5,
                ms: Some(150),
            }),
            ..Shape::default()
        };
        let t0 = Instant::now();
        tokio::spawn(async move {
            let mut s = Shaper::new(tx, shape);
            assert!(s.send(Bytes::from_static(b"abc")).await);
            assert!(s.send(Bytes::from_static(b"defghij")).await);
        });
        let (chunks, reset) = collect(rx).await;
        assert!(!reset);
        assert_eq!(
            chunks,
            vec![b"abc".to_vec(), b"de".to_vec(), b"fghij".to_vec()]
        );
        assert!(t0.elapsed() >= Duration::from_millis(150));
    }

    #[tokio::test]
    async fn an_endless_stall_ends_when_the_client_leaves() {
        let (tx, mut rx) = mpsc::channel(16);
        let shape = Shape {
            stall: Some(Stall { at: 2, ms: None }),
            ..Shape::default()
        };
        let task = tokio::spawn(async move {
            let mut s = Shaper::new(tx, shape);
            s.send(Bytes::from_static(b"abcdef")).await
        });
        assert_eq!(rx.recv().await.unwrap().unwrap(), Bytes::from_static(b"ab"));
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(rx.try_recv().is_err(), "nothing after the stall point");
        drop(rx);
        assert!(!task.await.unwrap(), "the sender learns the client left");
    }

    #[tokio::test]
    async fn slow_bodies_trickle_and_resets_cut() {
        let (tx, rx) = mpsc::channel(16);
        let shape = Shape {
            slow: Some(Slow { bytes: 4, ms: 20 }),
            reset_after: Some(10),
            ..Shape::default()
        };
        let t0 = Instant::now();
        tokio::spawn(async move {
            let mut s = Shaper::new(tx, shape);
            assert!(!s.send(Bytes::from_static(b"0123456789abcdef")).await);
        });
        let (chunks, reset) = collect(rx).await;
        assert!(reset, "aborted without a clean end");
        assert_eq!(
            chunks,
            vec![b"0123".to_vec(), b"4567".to_vec(), b"89".to_vec()]
        );
        assert!(t0.elapsed() >= Duration::from_millis(40));
    }
}
