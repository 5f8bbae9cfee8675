//! The frame codec and every message a peer can send or receive: a length
//! prefix read from arbitrary bytes, then the body decoded as each message type.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message;
use sotto_proto::v1;

fuzz_target!(|data: &[u8]| {
    let runtime = tokio_free::Runtime;
    if let Some(Ok(Some(body))) = runtime.read(data) {
        let _ = v1::Request::decode(body.as_ref());
        let _ = v1::Response::decode(body.as_ref());
        let _ = v1::Push::decode(body.as_ref());
    }
    let _ = v1::Request::decode(data);
    let _ = v1::SecretPayload::decode(data);
    let _ = v1::SecretContent::decode(data);
});

/// Drives the async frame reader over a byte slice without a runtime: a
/// slice never blocks, so one poll completes it.
mod tokio_free {
    use std::future::Future;
    use std::pin::pin;
    use std::task::{Context, Poll, Waker};

    pub struct Runtime;

    impl Runtime {
        pub fn read(
            &self,
            mut data: &[u8],
        ) -> Option<Result<Option<prost::bytes::Bytes>, sotto_proto::FrameError>> {
            let future = sotto_proto::frame::read_frame(&mut data, 64 * 1024);
            let mut future = pin!(future);
            match future.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
                Poll::Ready(result) => Some(result),
                Poll::Pending => None,
            }
        }
    }
}
