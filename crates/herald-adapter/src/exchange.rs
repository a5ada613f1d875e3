//! One HTTP exchange with the destination: build the request (the kind's
//! job), send it under an HTTP client span, classify the answer, and keep a
//! bounded excerpt of a failure's body.

use crate::kinds::RequestBuilder;
use herald_core::classify::{
    classify_status, classify_transport, parse_retry_after, ErrorClass, TransportError, Verdict,
};
use herald_core::envelope::Delivery;
use herald_core::headers as h;
use herald_core::otel::{self, TraceHeaders};
use tracing::{Instrument, Span};

/// How much of a failure's response body is read at most (the rest is
/// never buffered: a 500 MB error page costs this much, not 500 MB).
pub const EXCERPT_BYTES: usize = h::MAX_ERROR_MESSAGE;

/// Performs the HTTP call under an HTTP client span and classifies it. The
/// request carries the client span's context (or `trace`, the attempt's,
/// when not exporting). The message is a truncated response excerpt or
/// transport error.
pub async fn attempt(
    client: &reqwest::Client,
    kind: &dyn RequestBuilder,
    delivery: &Delivery,
    trace: Option<&TraceHeaders>,
) -> (Verdict, String) {
    let mut request = match kind.build(client, delivery).build() {
        Ok(r) => r,
        // The event cannot be expressed as a request (e.g. an id that is
        // not a valid header value): retrying cannot fix that.
        Err(e) => return request_failure(&e),
    };
    let span = http_span(&request);
    if let Some(t) = otel::outgoing(&span, trace) {
        set_trace_headers(request.headers_mut(), &t);
    }
    let exchange = async {
        match client.execute(request).await {
            Ok(resp) => {
                let status = resp.status().as_u16();
                otel::record_http_status(&span, status);
                let retry_after = resp
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(parse_retry_after);
                let verdict = classify_status(status, retry_after);
                let excerpt = match &verdict {
                    Verdict::Success { .. } => String::new(),
                    // The body of a failure explains it; read a bounded amount.
                    Verdict::Failure { .. } => h::read_excerpt(resp, EXCERPT_BYTES).await,
                };
                (verdict, excerpt)
            }
            Err(e) => {
                let failure = transport_failure(&e);
                if let Verdict::Failure { class, .. } = &failure.0 {
                    otel::record_error(&span, class.as_str());
                }
                failure
            }
        }
    };
    exchange.instrument(span.clone()).await
}

fn request_failure(e: &reqwest::Error) -> (Verdict, String) {
    (
        classify_transport(TransportError::Request),
        h::truncate(
            &format!("request could not be built: {}", error_chain(e)),
            h::MAX_ERROR_MESSAGE,
        ),
    )
}

fn transport_failure(e: &reqwest::Error) -> (Verdict, String) {
    if e.is_builder() {
        return request_failure(e);
    }
    let kind = if e.is_timeout() {
        TransportError::Timeout
    } else {
        TransportError::Connect
    };
    (
        classify_transport(kind),
        h::truncate(&error_chain(e), h::MAX_ERROR_MESSAGE),
    )
}

/// The HTTP client span of one request (disabled when not exporting). Its
/// `url.full` has no credentials, query or fragment: those may hold secrets.
fn http_span(r: &reqwest::Request) -> Span {
    if !otel::enabled() {
        return Span::none();
    }
    let mut url = r.url().clone();
    let _ = url.set_username("");
    let _ = url.set_password(None);
    url.set_query(None);
    url.set_fragment(None);
    otel::http_client_span(
        r.method().as_str(),
        url.as_str(),
        url.host_str(),
        url.port_or_known_default(),
    )
}

fn set_trace_headers(headers: &mut reqwest::header::HeaderMap, t: &TraceHeaders) {
    use reqwest::header::{HeaderName, HeaderValue};
    if let Ok(v) = HeaderValue::from_str(&t.traceparent) {
        headers.insert(HeaderName::from_static(h::TRACEPARENT), v);
    }
    if let Some(Ok(v)) = t.tracestate.as_deref().map(HeaderValue::from_str) {
        headers.insert(HeaderName::from_static(h::TRACESTATE), v);
    }
}

/// The error with its causes, without the URL (it may carry credentials).
fn error_chain(e: &reqwest::Error) -> String {
    let mut s = if e.is_timeout() {
        "request timed out".to_string()
    } else if e.is_connect() {
        "connection failed".to_string()
    } else {
        "request failed".to_string()
    };
    let mut src = std::error::Error::source(e);
    while let Some(cause) = src {
        s.push_str(": ");
        s.push_str(&cause.to_string());
        src = cause.source();
    }
    s
}

/// What an attempt's verdict says about the destination's health.
pub fn health_of(verdict: &Verdict) -> crate::circuit::Health {
    use crate::circuit::Health;
    match verdict {
        Verdict::Success { .. } => Health::Up,
        Verdict::Failure { class, .. } => match class {
            ErrorClass::Timeout
            | ErrorClass::Connect
            | ErrorClass::Http429
            | ErrorClass::Http5xx => Health::Down,
            _ => Health::Neutral,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A server that answers 500 with an endless body; the excerpt must come
    /// back although the body never ends.
    #[tokio::test]
    async fn a_huge_error_body_is_read_only_up_to_the_excerpt() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut req = [0u8; 1024];
            let _ = s.read(&mut req).await;
            s.write_all(
                b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 1000000000\r\n\r\n",
            )
            .await
            .unwrap();
            let chunk = vec![b'x'; 64 * 1024];
            let mut sent = 0usize;
            // Stops when the client hangs up.
            while s.write_all(&chunk).await.is_ok() {
                sent += chunk.len();
            }
            sent
        });
        let resp = reqwest::get(format!("http://{addr}/")).await.unwrap();
        assert_eq!(resp.status().as_u16(), 500);
        let excerpt = h::read_excerpt(resp, EXCERPT_BYTES).await;
        assert!(excerpt.starts_with("xxx"));
        assert!(excerpt.len() <= h::MAX_ERROR_MESSAGE + 4);
        let sent = server.await.unwrap();
        assert!(
            sent < 100 * 1024 * 1024,
            "the client stopped reading early ({sent} bytes sent of 1 GB)"
        );
    }
}
