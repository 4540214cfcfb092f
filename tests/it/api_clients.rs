//! The Identity, Cloud Servers and Cloud Images clients against small scripted servers: the
//! createImage id fallbacks, Glance pagination, non-JSON and malformed answers, and the token
//! cache (refresh once after a 401, shared by concurrent requests).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use imgferry::api::auth::Auth;
use imgferry::api::compute::Compute;
use imgferry::api::images::Images;
use imgferry::api::{self, JsonService};
use imgferry::credentials::{Credentials, Secret};
use imgferry::http::RetryConfig;
use serde_json::{Value, json};

async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

fn quick() -> RetryConfig {
    RetryConfig {
        max_retries: 1,
        base: Duration::from_millis(1),
        max: Duration::from_millis(5),
        ..RetryConfig::default()
    }
}

fn service(base: &str, auth: Auth) -> JsonService {
    JsonService::new(imgferry::http::client().unwrap(), base, auth, quick())
}

#[tokio::test]
async fn create_image_finds_the_id_in_location_then_body_else_none() {
    let app = Router::new()
        .route(
            "/v2/1/servers/loc/action",
            post(|| async {
                (
                    StatusCode::ACCEPTED,
                    [(header::LOCATION, "https://x/v2/1/images/img-from-location")],
                )
            }),
        )
        .route(
            "/v2/1/servers/body/action",
            post(|| async { (StatusCode::ACCEPTED, axum::Json(json!({"image_id": "img-from-body"}))) }),
        )
        .route("/v2/1/servers/empty/action", post(|| async { StatusCode::ACCEPTED }))
        .route(
            "/v2/1/servers/busy/action",
            post(|| async {
                (
                    StatusCode::CONFLICT,
                    axum::Json(json!({"conflictingRequest": {"code": 409, "message": "Cannot 'createImage' while instance is in task_state image_snapshot"}})),
                )
            }),
        );
    let base = serve(app).await;
    let compute = Compute::new(service(&format!("{base}/v2/1"), Auth::fixed("t")));
    assert_eq!(
        compute.create_image("loc", "n").await.unwrap().as_deref(),
        Some("img-from-location")
    );
    assert_eq!(
        compute.create_image("body", "n").await.unwrap().as_deref(),
        Some("img-from-body")
    );
    assert_eq!(compute.create_image("empty", "n").await.unwrap(), None);
    let busy = compute.create_image("busy", "n").await.unwrap_err();
    assert!(matches!(busy, api::Error::Conflict { .. }), "{busy}");
    assert!(busy.to_string().contains("task_state image_snapshot"));
}

#[tokio::test]
async fn image_lists_follow_next_and_match_names_exactly() {
    let app = Router::new().route(
        "/v2/images",
        get(
            |q: axum::extract::Query<Vec<(String, String)>>| async move {
                let marker =
                    q.0.iter()
                        .find(|(k, _)| k == "marker")
                        .map(|(_, v)| v.clone());
                axum::Json(match marker.as_deref() {
                    None => json!({"images": [{"id": "1", "name": "snap", "status": "active"},
                                          {"id": "2", "name": "snap-other", "status": "active"}],
                               "next": "/v2/images?name=snap&marker=2"}),
                    Some(_) => json!({"images": [{"id": "3", "name": "snap", "status": "saving"}]}),
                })
            },
        ),
    );
    let base = serve(app).await;
    let images = Images::new(service(&format!("{base}/v2"), Auth::fixed("t")));
    let found: Vec<String> = images
        .find_images("snap")
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.id)
        .collect();
    assert_eq!(found, ["1", "3"]);
}

#[tokio::test]
async fn tasks_are_matched_on_their_input() {
    let app = Router::new()
        .route(
            "/v2/tasks",
            get(|| async {
                axum::Json(
                    json!({"tasks": [{"id": "a", "type": "import", "status": "success"},
                                            {"id": "b", "type": "import", "status": "failure"}]}),
                )
            }),
        )
        .route(
            "/v2/tasks/{id}",
            get(|p: axum::extract::Path<String>| async move {
                let input = if p.0 == "a" {
                    json!({"import_from": "c/other"})
                } else {
                    json!({"import_from": "c/mine"})
                };
                axum::Json(
                    json!({"id": p.0, "type": "import", "status": "failure", "input": input,
                                  "message": "None", "result": null}),
                )
            }),
        );
    let base = serve(app).await;
    let images = Images::new(service(&format!("{base}/v2"), Auth::fixed("t")));
    let t = images
        .find_task("import", &json!({"import_from": "c/mine"}))
        .await
        .unwrap()
        .expect("found");
    assert_eq!(t.id, "b");
    assert_eq!(t.message, None, "\"None\" means no message");
    assert!(
        images
            .find_task("import", &json!({"import_from": "c/none"}))
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn hostile_answers_become_errors_naming_the_endpoint() {
    let app = Router::new()
        .route(
            "/v2/images/html",
            get(|| async {
                (
                    StatusCode::BAD_GATEWAY,
                    "<html><h1>502 Bad Gateway</h1></html>",
                )
            }),
        )
        .route(
            "/v2/images/cut",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, "application/json")],
                    "{\"id\": \"x\", \"st",
                )
            }),
        )
        .route(
            "/v2/images/wrong",
            get(|| async { axum::Json(json!({"id": 5, "status": ["active"]})) }),
        )
        .route(
            "/v2/images/page",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, "text/html")],
                    "<html><body>Maintenance</body></html>",
                )
            }),
        )
        .route(
            "/v2/images/huge",
            get(|| async { ([(header::CONTENT_LENGTH, "9223372036854775807")], "{}") }),
        );
    let base = serve(app).await;
    let images = Images::new(service(&format!("{base}/v2"), Auth::fixed("t")));
    for (id, expect) in [
        ("html", "HTTP 502"),
        ("cut", "not the expected JSON"),
        ("wrong", "not the expected JSON"),
        ("page", "not the expected JSON"),
    ] {
        let e = images.get_image(id).await.unwrap_err();
        let text = imgferry::error_chain(&e);
        assert!(text.contains(expect), "{id}: {text}");
        assert!(
            text.contains(&format!("/v2/images/{id}")),
            "names the endpoint: {text}"
        );
    }
    // A lying Content-Length is refused before anything is allocated for it (or the connection
    // fails); either way an error, never a panic.
    assert!(images.get_image("huge").await.is_err());
}

/// An identity endpoint issuing t1, t2, … and a service that accepts only the newest token.
#[tokio::test]
async fn a_401_refreshes_the_token_once_for_all_concurrent_requests() {
    let logins = Arc::new(AtomicUsize::new(0));
    let l = Arc::clone(&logins);
    let app = Router::new()
        .route(
            "/identity/v2.0/tokens",
            post(move |body: axum::Json<Value>| {
                let l = Arc::clone(&l);
                async move {
                    assert_eq!(body["auth"]["RAX-KSKEY:apiKeyCredentials"]["apiKey"], "k");
                    let n = l.fetch_add(1, Ordering::SeqCst) + 1;
                    axum::Json(json!({"access": {"token": {"id": format!("t{n}"), "expires": "2099-01-01T00:00:00.000Z"},
                                                 "serviceCatalog": []}}))
                }
            }),
        )
        .route(
            "/v2/images/{id}",
            get(|headers: HeaderMap| async move {
                match headers.get("x-auth-token").and_then(|v| v.to_str().ok()) {
                    Some("t2") => axum::Json(json!({"id": "i", "status": "active"})).into_response(),
                    _ => (StatusCode::UNAUTHORIZED, axum::Json(json!({"unauthorized": {"code": 401, "message": "expired"}}))).into_response(),
                }
            }),
        );
    let base = serve(app).await;
    let http = imgferry::http::client().unwrap();
    let creds = Credentials {
        username: "u".into(),
        secret: Secret::ApiKey("k".into()),
        tenant: None,
    };
    let (auth, _) = Auth::login(&http, &format!("{base}/identity/v2.0"), creds, &quick())
        .await
        .unwrap();
    let images = Images::new(service(&format!("{base}/v2"), auth));
    let results = futures::future::join_all((0..6).map(|_| images.get_image("i"))).await;
    for r in results {
        assert_eq!(r.unwrap().unwrap().status, "active");
    }
    assert_eq!(logins.load(Ordering::SeqCst), 2, "one login, one refresh");
}

#[tokio::test]
async fn redirects_are_never_followed_so_tokens_never_leave_the_endpoint() {
    let hits = Arc::new(AtomicUsize::new(0));
    let h = Arc::clone(&hits);
    let elsewhere = serve(Router::new().fallback(move || {
        h.fetch_add(1, Ordering::SeqCst);
        async { "{}" }
    }))
    .await;
    let target = format!("{elsewhere}/v2/images/i");
    let app = Router::new().route(
        "/v2/images/i",
        get(move || {
            let target = target.clone();
            async move { (StatusCode::FOUND, [(header::LOCATION, target)]) }
        }),
    );
    let base = serve(app).await;
    let images = Images::new(service(&format!("{base}/v2"), Auth::fixed("t")));
    let e = images.get_image("i").await.unwrap_err();
    let text = imgferry::error_chain(&e);
    assert!(
        text.contains("HTTP 302") && text.contains("/v2/images/i"),
        "{text}"
    );
    assert_eq!(
        hits.load(Ordering::SeqCst),
        0,
        "the redirect target was never contacted"
    );
}

#[tokio::test]
async fn an_absurd_object_size_is_a_clear_error_not_an_allocation() {
    use imgferry::api::object_store::{ObjectStore, RemoteObject};
    let app = Router::new().route(
        "/v1/a/c/huge.vhd",
        axum::routing::head(|| async {
            (
                StatusCode::OK,
                [
                    (header::CONTENT_LENGTH, "9223372036854775807"),
                    (header::ETAG, "\"abc\""),
                ],
            )
        })
        .get(|| async { (StatusCode::RANGE_NOT_SATISFIABLE, "no") }),
    );
    let base = serve(app).await;
    let store = ObjectStore::new(
        imgferry::http::client().unwrap(),
        &format!("{base}/v1/a"),
        Auth::fixed("t"),
        quick(),
    );
    let source = imgferry::transfer::inspect(&store, "c", "huge.vhd", Default::default()).await;
    let source = match source {
        Ok(s) => s,
        Err(e) => {
            // Refusing it at inspection is as good as refusing it at planning.
            assert!(!imgferry::error_chain(&e).is_empty());
            return;
        }
    };
    assert_eq!(source.len, 9_223_372_036_854_775_807);
    let plan = imgferry::transfer::TransferState::new(source.clone(), "d", "o", 128 << 20);
    let err = plan.expect_err("a 2^63-byte object cannot be planned in ≤ 1000 segments of ≤ 5 GiB");
    assert!(!imgferry::error_chain(&err).is_empty());
    let remote = RemoteObject {
        store: &store,
        container: "c".into(),
        name: "huge.vhd".into(),
        len: source.len,
    };
    let validated = imgferry::vhd::validate(&remote, &imgferry::vhd::Policy::default()).await;
    assert!(
        validated.is_err(),
        "the footer read at 2^63 − 512 fails cleanly"
    );
}
