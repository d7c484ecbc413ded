//! The streamed-response tee: the upstream's frames pass through to the client untouched while
//! they are assembled for the log.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use downshift_store::CallStatus;
use http_body::{Body as HttpBody, Frame};
use hyper::body::Incoming;

use crate::call::{CallGuard, Outcome};
use crate::events::Collector;
use crate::proxy::account;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Passes a streamed response through frame by frame while assembling it for the log. Ends
/// the stream with an error when the upstream goes silent for longer than the idle limit.
pub(crate) struct TeeBody {
    pub(crate) inner: Incoming,
    pub(crate) asm: Collector,
    pub(crate) idle: Pin<Box<tokio::time::Sleep>>,
    pub(crate) idle_for: Duration,
    pub(crate) guard: CallGuard,
    pub(crate) http_status: u16,
    pub(crate) t_sent: Instant,
    pub(crate) ttft: Option<Duration>,
    pub(crate) overhead: Duration,
    /// Counts the stream in flight on its upstream until it ends (`least_busy`).
    pub(crate) _busy: Option<crate::upstream::Busy>,
    /// Where the stream's tokens and cost are counted, when limits are set.
    pub(crate) limits: Option<Arc<crate::limits::Limiter>>,
}

impl TeeBody {
    fn finish(&mut self, status: CallStatus) {
        if self.guard.ctx().is_none() {
            return;
        }
        let assembled = self.asm.finish();
        let usage = crate::events::usage_of(&assembled);
        if let Some(l) = &self.limits {
            account(l, &self.guard, usage);
        }
        let response = serde_json::to_vec(&assembled).unwrap_or_default();
        self.guard.finish(Outcome {
            status,
            http_status: Some(self.http_status),
            response,
            usage,
            ttft: self.ttft,
            overhead: Some(self.overhead),
        });
    }
}

impl HttpBody for TeeBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.asm.feed(data);
                    if this.ttft.is_none() && this.asm.has_output() {
                        this.ttft = Some(this.t_sent.elapsed());
                    }
                }
                let next = tokio::time::Instant::now() + this.idle_for;
                this.idle.as_mut().reset(next);
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                this.finish(CallStatus::Interrupted);
                Poll::Ready(Some(Err(Box::new(e))))
            }
            Poll::Ready(None) => {
                let status = if this.asm.is_complete() {
                    CallStatus::Ok
                } else {
                    CallStatus::Interrupted
                };
                this.finish(status);
                Poll::Ready(None)
            }
            Poll::Pending => {
                if this.idle.as_mut().poll(cx).is_ready() {
                    this.finish(CallStatus::Timeout);
                    return Poll::Ready(Some(Err("upstream stream went idle".into())));
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }
}

impl Drop for TeeBody {
    fn drop(&mut self) {
        // The client went away before the stream ended.
        self.finish(CallStatus::Interrupted);
    }
}
