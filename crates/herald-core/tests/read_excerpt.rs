//! `headers::read_excerpt` against a real HTTP server (axum on 127.0.0.1:0):
//! a destination answering with an endless body must not hold the adapter.

use axum::body::Body;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use herald_core::headers::read_excerpt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Serves `/endless` (500 with a body that never ends, counting the chunks
/// it produced), `/short` and `/utf8`. Returns the base URL.
async fn serve(produced: Arc<AtomicUsize>) -> String {
    let endless = move || {
        let produced = produced.clone();
        async move {
            let chunk = bytes_of(64 * 1024);
            let stream = futures::stream::repeat_with(move || {
                produced.fetch_add(1, Ordering::Relaxed);
                Ok::<_, std::io::Error>(chunk.clone())
            });
            Response::builder()
                .status(StatusCode::INTERNAL_SERVER_ERROR)
                .body(Body::from_stream(stream))
                .unwrap()
        }
    };
    let app = Router::new()
        .route("/endless", get(endless))
        .route(
            "/short",
            get(|| async { (StatusCode::BAD_REQUEST, "field `email` is required") }),
        )
        // 'é' is two bytes: the 5th byte is the middle of one.
        .route(
            "/utf8",
            get(|| async { (StatusCode::BAD_REQUEST, "abcdé and more") }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

fn bytes_of(n: usize) -> Vec<u8> {
    (0..n).map(|i| b'a' + (i % 26) as u8).collect()
}

async fn get_resp(url: &str) -> reqwest::Response {
    reqwest::Client::new().get(url).send().await.unwrap()
}

#[tokio::test]
async fn an_endless_body_is_cut_at_max() {
    let produced = Arc::new(AtomicUsize::new(0));
    let base = serve(produced.clone()).await;
    let resp = get_resp(&format!("{base}/endless")).await;
    assert_eq!(resp.status(), 500);
    // Reading the whole body would never finish; the excerpt must.
    let excerpt = tokio::time::timeout(Duration::from_secs(60), read_excerpt(resp, 1000))
        .await
        .expect("read_excerpt returned although the body never ends");
    assert_eq!(excerpt.len(), 1000);
    assert_eq!(excerpt.as_bytes(), &bytes_of(1000)[..]);
    assert!(produced.load(Ordering::Relaxed) >= 1);
}

#[tokio::test]
async fn a_short_body_is_read_whole() {
    let base = serve(Arc::default()).await;
    let excerpt = read_excerpt(get_resp(&format!("{base}/short")).await, 512).await;
    assert_eq!(excerpt, "field `email` is required");
    let excerpt = read_excerpt(get_resp(&format!("{base}/short")).await, 5).await;
    assert_eq!(excerpt, "field");
    let excerpt = read_excerpt(get_resp(&format!("{base}/short")).await, 0).await;
    assert_eq!(excerpt, "");
}

#[tokio::test]
async fn a_character_cut_at_max_stays_within_max() {
    let base = serve(Arc::default()).await;
    let excerpt = read_excerpt(get_resp(&format!("{base}/utf8")).await, 5).await;
    assert!(excerpt.len() <= 5, "{excerpt:?}");
    assert!(excerpt.starts_with("abcd"), "{excerpt:?}");
    let excerpt = read_excerpt(get_resp(&format!("{base}/utf8")).await, 6).await;
    assert_eq!(excerpt, "abcdé");
}
