//! A request body that is not valid protobuf is the caller's error: tonic's codec answers
//! it INTERNAL (before the handler runs); [`CallerErrors`] wraps a generated service and
//! answers it INVALID_ARGUMENT instead, through [`crate::error`]. Streams of requests
//! see a bad message in the handler (`Streaming::message`), which maps it the same way.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tonic::body::Body;
use tonic::codegen::{http, Service};
use tonic::server::NamedService;
use tonic::Status;

use crate::error::Error;

#[derive(Debug, Clone)]
pub struct CallerErrors<S>(pub S);

impl<S: NamedService> NamedService for CallerErrors<S> {
    const NAME: &'static str = S::NAME;
}

impl<S, B> Service<http::Request<B>> for CallerErrors<S>
where
    S: Service<http::Request<B>, Response = http::Response<Body>, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let answer = self.0.call(request);
        Box::pin(async move {
            let mut response = answer.await?;
            // tonic leaves the status of a trailers-only answer in the extensions.
            let Some(error) = response.extensions().get::<Status>().and_then(Error::from_inbound) else {
                return Ok(response);
            };
            let status = Status::from(error);
            let headers = response.headers_mut();
            headers.remove(Status::GRPC_MESSAGE);
            headers.remove(Status::GRPC_STATUS_DETAILS);
            if let Err(e) = status.add_header(headers) {
                // Cannot happen (the message is percent-encoded); keep tonic's answer.
                tracing::warn!(error = %e, "cannot rewrite an undecodable request's status");
                return Ok(response);
            }
            response.extensions_mut().insert(status);
            Ok(response)
        })
    }
}
