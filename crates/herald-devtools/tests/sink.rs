//! The sink driven over real HTTP, as Herald's adapter would.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use herald_core::signature::SigningKey;
use herald_devtools::{Behaviour, RouteStats, Sink};
use reqwest::{Client, StatusCode};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn client() -> Client {
    Client::builder().no_proxy().build().unwrap()
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn body(id: &str) -> String {
    format!(
        r#"{{"specversion":"1.0","id":"{id}","type":"order.created","source":"test","data":{{}}}}"#
    )
}

/// A POST shaped like the adapter's, signed with `SECRET`.
async fn post(client: &Client, url: &str, id: &str) -> reqwest::Result<reqwest::Response> {
    post_signed_with(client, url, id, &SigningKey::parse(SECRET).unwrap()).await
}

async fn post_signed_with(
    client: &Client,
    url: &str,
    id: &str,
    key: &SigningKey,
) -> reqwest::Result<reqwest::Response> {
    let ts = now();
    let body = body(id);
    let sig = key.sign(id, ts, body.as_bytes());
    client
        .post(url)
        .header("content-type", "application/cloudevents+json")
        .header("webhook-id", id)
        .header("webhook-timestamp", ts.to_string())
        .header("webhook-signature", sig)
        .body(body)
        .send()
        .await
}

#[tokio::test]
async fn healthy_route_counts_unique_and_duplicate_deliveries() {
    let sink = Sink::start(vec![("/ok".into(), Behaviour::healthy())])
        .await
        .unwrap();
    let c = client();
    for id in ["a", "b", "a", "a"] {
        let r = post(&c, &sink.url("/ok"), id).await.unwrap();
        assert_eq!(r.status(), StatusCode::NO_CONTENT);
    }
    let r = c
        .post(sink.url("/ok"))
        .header(
            "traceparent",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        )
        .body(body("c"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);

    assert_eq!(
        sink.stats("/ok"),
        RouteStats {
            requests: 5,
            delivered: 5,
            unique_delivered: 3,
            duplicate_deliveries: 2,
            bad_signatures: 0,
            missing_headers: 1,
            traceparents: 1,
            last_traceparent: Some(
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into()
            ),
        }
    );
    let ids = sink.delivered_ids("/ok");
    assert_eq!(ids.len(), 3);
    assert!(["a", "b", "c"].iter().all(|id| ids.contains(*id)));
}

#[tokio::test]
async fn fixed_status_is_answered_and_not_delivered() {
    let sink = Sink::start(vec![("/bad".into(), Behaviour::status(400))])
        .await
        .unwrap();
    let r = post(&client(), &sink.url("/bad"), "a").await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let s = sink.stats("/bad");
    assert_eq!((s.requests, s.delivered, s.unique_delivered), (1, 0, 0));
    assert!(sink.delivered_ids("/bad").is_empty());
}

#[tokio::test]
async fn hanging_route_makes_the_client_time_out_without_blocking_others() {
    let hang = Behaviour {
        hang: Duration::from_secs(2),
        ..Behaviour::flaky(1.0, 0.0)
    };
    let sink = Sink::start(vec![
        ("/hang".into(), hang),
        ("/ok".into(), Behaviour::healthy()),
    ])
    .await
    .unwrap();
    let impatient = Client::builder()
        .no_proxy()
        .timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    let hang_url = sink.url("/hang");
    let (hung, ok) = tokio::join!(post(&impatient, &hang_url, "a"), async {
        // While the first request hangs, another route still answers at once.
        tokio::time::sleep(Duration::from_millis(50)).await;
        post(&impatient, &sink.url("/ok"), "b").await
    });
    assert!(hung.unwrap_err().is_timeout());
    assert_eq!(ok.unwrap().status(), StatusCode::NO_CONTENT);
    let s = sink.stats("/hang");
    assert_eq!((s.requests, s.delivered), (1, 0));
}

#[tokio::test]
async fn signature_checking_accepts_good_and_rejects_bad_signatures() {
    let signed = Behaviour {
        secret: Some(SECRET.into()),
        ..Behaviour::healthy()
    };
    let sink = Sink::start(vec![("/signed".into(), signed)]).await.unwrap();
    let c = client();
    let url = sink.url("/signed");

    assert_eq!(
        post(&c, &url, "good").await.unwrap().status(),
        StatusCode::NO_CONTENT
    );

    let other = SigningKey::parse("whsec_c2Vjb25kLWtleS1mb3Itcm90YXRpb24=").unwrap();
    let r = post_signed_with(&c, &url, "forged", &other).await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    // A correct signature over a different body does not verify either.
    let ts = now();
    let sig = SigningKey::parse(SECRET)
        .unwrap()
        .sign("tampered", ts, body("tampered").as_bytes());
    let r = c
        .post(&url)
        .header("webhook-id", "tampered")
        .header("webhook-timestamp", ts.to_string())
        .header("webhook-signature", sig)
        .body(body("tampered-with"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    let r = c.post(&url).body(body("unsigned")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    let s = sink.stats("/signed");
    assert_eq!(
        (s.requests, s.delivered, s.bad_signatures, s.missing_headers),
        (4, 1, 3, 1)
    );
    assert_eq!(
        sink.delivered_ids("/signed")
            .into_iter()
            .collect::<Vec<_>>(),
        ["good"]
    );
}

#[tokio::test]
async fn set_behaviour_switches_a_failing_route_to_healthy() {
    let sink = Sink::start(vec![("/flip".into(), Behaviour::status(503))])
        .await
        .unwrap();
    let c = client();
    let url = sink.url("/flip");
    assert_eq!(
        post(&c, &url, "a").await.unwrap().status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    sink.set_behaviour("/flip", Behaviour::healthy());
    assert_eq!(
        post(&c, &url, "a").await.unwrap().status(),
        StatusCode::NO_CONTENT
    );
    let s = sink.stats("/flip");
    assert_eq!((s.requests, s.delivered, s.unique_delivered), (2, 1, 1));
}

#[tokio::test]
async fn rate_limits_carry_retry_after_and_ratios_are_roughly_honoured() {
    let limited = Behaviour {
        status_429_ratio: 1.0,
        retry_after_secs: Some(7),
        ..Behaviour::default()
    };
    let half = Behaviour::flaky(0.0, 0.5);
    let sink = Sink::start(vec![("/429".into(), limited), ("/half".into(), half)])
        .await
        .unwrap();
    let c = client();
    let r = post(&c, &sink.url("/429"), "a").await.unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.headers()["retry-after"], "7");

    let mut unavailable = 0;
    for i in 0..200 {
        let r = post(&c, &sink.url("/half"), &format!("e{i}"))
            .await
            .unwrap();
        if r.status() == StatusCode::SERVICE_UNAVAILABLE {
            unavailable += 1;
        }
    }
    assert!(
        (60..=140).contains(&unavailable),
        "{unavailable} of 200 got 503"
    );
    assert_eq!(sink.stats("/half").delivered, 200 - unavailable);
}

#[tokio::test]
async fn unknown_paths_get_404_and_stats_are_served_as_json() {
    let sink = Sink::start(vec![("/ok".into(), Behaviour::healthy())])
        .await
        .unwrap();
    let c = client();
    let r = post(&c, &sink.url("/nowhere"), "a").await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    post(&c, &sink.url("/ok"), "a").await.unwrap();

    let text = c
        .get(sink.url("/stats"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["/ok"]["requests"], 1);
    assert_eq!(v["/ok"]["unique_delivered"], 1);
    assert_eq!(sink.stats("/nowhere"), RouteStats::default());
}
