//! Response bodies: a whole buffer, or a scripted sequence of frames with pauses and an optional
//! mid-stream connection drop.

use std::collections::VecDeque;
use std::time::Duration;

use bytes::Bytes;
use http_body::Frame;
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Full, StreamBody};
use tokio::time::Instant;

use crate::conn::ResetSwitch;

/// The body type of every mock response.
pub(crate) type MockBody = UnsyncBoxBody<Bytes, DroppedMidStream>;

/// The body error that makes hyper abort the connection mid-response (`x-mock-drop: mid-stream`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("connection dropped mid-stream as the mock's controls asked")]
pub(crate) struct DroppedMidStream;

/// Pause before a mid-stream drop, long enough for the sent part to leave the socket.
const FLUSH_PAUSE: Duration = Duration::from_millis(20);

/// One piece of a scripted body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Piece {
    pub(crate) bytes: Bytes,
    /// Whether to wait the piece delay before sending it.
    pub(crate) paced: bool,
}

/// A body sent in one go, with an exact `content-length`.
pub(crate) fn full(bytes: Bytes) -> MockBody {
    Full::new(bytes)
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// Where a scripted body breaks the connection.
#[derive(Debug, Clone)]
pub(crate) struct Cut {
    /// Pieces sent first.
    pub(crate) after: usize,
    /// Tripped before the break, to make it a reset rather than a close.
    pub(crate) reset: Option<ResetSwitch>,
}

/// A body sent piece by piece: the k-th paced piece is due `k × delay` after the body was built
/// (deadlines, so timer rounding does not add up over a stream); at `cut` the body fails, which
/// ends the connection.
pub(crate) fn scripted(pieces: Vec<Piece>, delay: Duration, cut: Option<Cut>) -> MockBody {
    struct State {
        pieces: VecDeque<Piece>,
        sent: usize,
        delay: Duration,
        next_due: Instant,
        cut: Option<Cut>,
    }
    let state = State {
        pieces: pieces.into(),
        sent: 0,
        delay,
        next_due: Instant::now(),
        cut,
    };
    let stream = futures_util::stream::unfold(state, |mut st| async move {
        if st.cut.as_ref().is_some_and(|cut| cut.after == st.sent) {
            let cut = st.cut.take();
            st.pieces.clear();
            // Let the connection flush what was sent, so the client sees a partial body.
            tokio::time::sleep(FLUSH_PAUSE).await;
            if let Some(reset) = cut.and_then(|cut| cut.reset) {
                reset.trip();
            }
            return Some((Err(DroppedMidStream), st));
        }
        let piece = st.pieces.pop_front()?;
        if piece.paced && !st.delay.is_zero() {
            st.next_due += st.delay;
            tokio::time::sleep_until(st.next_due).await;
        }
        st.sent += 1;
        Some((Ok(Frame::data(piece.bytes)), st))
    });
    StreamBody::new(stream).boxed_unsync()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn piece(s: &'static str, paced: bool) -> Piece {
        Piece {
            bytes: Bytes::from_static(s.as_bytes()),
            paced,
        }
    }

    async fn frames(mut body: MockBody) -> (Vec<Bytes>, bool) {
        let mut out = Vec::new();
        while let Some(frame) = body.frame().await {
            match frame {
                Ok(f) => out.extend(f.into_data().ok()),
                Err(DroppedMidStream) => return (out, true),
            }
        }
        (out, false)
    }

    #[tokio::test]
    async fn sends_every_piece_in_order() {
        let body = scripted(
            vec![piece("a", false), piece("b", true)],
            Duration::ZERO,
            None,
        );
        assert_eq!(
            frames(body).await,
            (vec![Bytes::from("a"), Bytes::from("b")], false)
        );
    }

    #[tokio::test]
    async fn drops_after_the_given_piece() {
        let body = scripted(
            vec![piece("a", false), piece("b", true), piece("c", true)],
            Duration::ZERO,
            Some(Cut {
                after: 2,
                reset: None,
            }),
        );
        assert_eq!(
            frames(body).await,
            (vec![Bytes::from("a"), Bytes::from("b")], true)
        );
    }

    #[tokio::test]
    async fn paces_only_paced_pieces() {
        let start = std::time::Instant::now();
        let body = scripted(
            vec![piece("a", false), piece("b", true), piece("c", true)],
            Duration::from_millis(30),
            None,
        );
        let _ = frames(body).await;
        let elapsed = start.elapsed();
        assert!(elapsed >= Duration::from_millis(60), "{elapsed:?}");
        assert!(elapsed < Duration::from_millis(90), "{elapsed:?}");
    }

    #[tokio::test]
    async fn pacing_follows_deadlines_without_drift() {
        let pieces = (0..30).map(|_| piece("x", true)).collect();
        let start = std::time::Instant::now();
        let _ = frames(scripted(pieces, Duration::from_millis(2), None)).await;
        let elapsed = start.elapsed();
        // Relative sleeps would round each 2 ms pause up to ~3 ms (≈ 90 ms in all).
        assert!(elapsed >= Duration::from_millis(60), "{elapsed:?}");
        assert!(elapsed < Duration::from_millis(80), "{elapsed:?}");
    }

    #[tokio::test]
    async fn full_body_has_exact_size() {
        let body = full(Bytes::from_static(b"hello"));
        assert_eq!(http_body::Body::size_hint(&body).exact(), Some(5));
    }
}
