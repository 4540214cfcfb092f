//! The simulator's Cloud Files, driven over HTTP with reqwest: every route and each error path.

use imgferry::sim::{self, SimConfig, SimHandle};
use md5::{Digest, Md5};
use reqwest::{Client, Method, StatusCode};

const MIB: usize = 1 << 20;

struct Files {
    sim: SimHandle,
    http: Client,
    token: String,
    url: String,
}

impl Files {
    async fn start(config: SimConfig) -> Self {
        let sim = sim::spawn(config).await.expect("start simulator");
        let token = sim.issue_token();
        let url = sim.object_store_url("DFW");
        Self {
            sim,
            http: Client::new(),
            token,
            url,
        }
    }

    async fn new() -> Self {
        Self::start(SimConfig::default()).await
    }

    fn req(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        let sep = if path.is_empty() || path.starts_with('?') {
            ""
        } else {
            "/"
        };
        self.http
            .request(method, format!("{}{sep}{path}", self.url))
            .header("X-Auth-Token", &self.token)
    }

    async fn put(&self, path: &str, body: Vec<u8>) -> reqwest::Response {
        let len = body.len().to_string();
        self.req(Method::PUT, path)
            .header("Content-Length", len)
            .body(body)
            .send()
            .await
            .unwrap()
    }

    async fn get(&self, path: &str) -> reqwest::Response {
        self.req(Method::GET, path).send().await.unwrap()
    }
}

fn md5_hex(data: &[u8]) -> String {
    hex::encode(Md5::digest(data))
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

#[tokio::test]
async fn tokens_and_endpoints_are_checked() {
    let f = Files::new().await;
    let anon = f.http.get(format!("{}/c", f.url)).send().await.unwrap();
    assert_eq!(anon.status(), StatusCode::UNAUTHORIZED);
    assert!(anon.text().await.unwrap().contains("<h1>Unauthorized</h1>"));
    let wrong_region = f
        .http
        .get(f.sim.object_store_url("SYD") + "/c")
        .header("X-Auth-Token", &f.token)
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_region.status(), StatusCode::NOT_FOUND);
    assert_eq!(f.put("c", vec![]).await.status(), StatusCode::CREATED);
    f.sim.expire_tokens();
    assert_eq!(f.get("c").await.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn containers_create_head_list_and_delete() {
    let f = Files::new().await;
    assert_eq!(f.put("c", vec![]).await.status(), StatusCode::CREATED);
    assert_eq!(
        f.put("c", vec![]).await.status(),
        StatusCode::ACCEPTED,
        "PUT is idempotent"
    );
    assert_eq!(
        f.put("c/a", b"hello".to_vec()).await.status(),
        StatusCode::CREATED
    );
    let head = f.req(Method::HEAD, "c").send().await.unwrap();
    assert_eq!(head.headers()["x-container-object-count"], "1");
    assert_eq!(head.headers()["x-container-bytes-used"], "5");
    assert!(head.headers().contains_key("x-trans-id"));
    assert_eq!(
        f.req(Method::DELETE, "c").send().await.unwrap().status(),
        StatusCode::CONFLICT
    );
    assert_eq!(
        f.req(Method::DELETE, "missing")
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        f.req(Method::DELETE, "c/a").send().await.unwrap().status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        f.req(Method::DELETE, "c/a").send().await.unwrap().status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        f.req(Method::DELETE, "c").send().await.unwrap().status(),
        StatusCode::NO_CONTENT
    );
    let account: serde_json::Value = f
        .req(Method::GET, "")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(account, serde_json::json!([]));
    assert_eq!(
        f.put("c/x", b"no container".to_vec()).await.status(),
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn put_checks_etag_and_get_returns_the_bytes() {
    let f = Files::new().await;
    f.put("c", vec![]).await;
    let data = pattern(3 * MIB + 17, 1);
    let ok = f
        .req(Method::PUT, "c/obj")
        .header("ETag", md5_hex(&data))
        .body(data.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), StatusCode::CREATED);
    assert_eq!(ok.headers()["etag"], md5_hex(&data).as_str());
    let got = f.get("c/obj").await;
    assert_eq!(got.headers()["etag"], md5_hex(&data).as_str());
    assert_eq!(got.bytes().await.unwrap().as_ref(), &data[..]);
    // A mismatched ETag is refused with 422 and nothing is stored.
    let bad = f
        .req(Method::PUT, "c/other")
        .header("ETag", md5_hex(b"x"))
        .body(data)
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(bad.text().await.unwrap().contains("Unprocessable Entity"));
    assert_eq!(
        f.req(Method::HEAD, "c/other")
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::NOT_FOUND
    );
    // Overwriting replaces the content.
    f.put("c/obj", b"new".to_vec()).await;
    assert_eq!(f.get("c/obj").await.bytes().await.unwrap().as_ref(), b"new");
}

#[tokio::test]
async fn object_size_limit_is_413_for_declared_and_chunked_bodies() {
    let f = Files::start(SimConfig {
        max_object_size: MIB as u64,
        ..SimConfig::default()
    })
    .await;
    f.put("c", vec![]).await;
    assert_eq!(
        f.put("c/fits", vec![7; MIB]).await.status(),
        StatusCode::CREATED
    );
    let declared = f.put("c/big", vec![7; MIB + 1]).await;
    assert_eq!(declared.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..5).map(|_| Ok(vec![1u8; MIB / 2])).collect();
    let chunked = f
        .req(Method::PUT, "c/streamed")
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        .send()
        .await;
    // The server answers 413 as soon as the limit is crossed; it may close before reading the rest.
    if let Ok(resp) = chunked {
        assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    }
    assert_eq!(
        f.req(Method::HEAD, "c/streamed")
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn missing_content_length_is_411() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let f = Files::new().await;
    f.put("c", vec![]).await;
    let path = f
        .url
        .split_once(&f.sim.addr.to_string())
        .unwrap()
        .1
        .to_string();
    let mut tcp = tokio::net::TcpStream::connect(f.sim.addr).await.unwrap();
    let request = format!(
        "PUT {path}/c/o HTTP/1.1\r\nHost: x\r\nX-Auth-Token: {}\r\nConnection: close\r\n\r\n",
        f.token
    );
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    tcp.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 411"), "{answer}");
}

#[tokio::test]
async fn ranges_answer_206_and_416() {
    let f = Files::new().await;
    f.put("c", vec![]).await;
    let data = pattern(1000, 9);
    f.put("c/o", data.clone()).await;
    for (range, want) in [
        ("bytes=10-19", &data[10..20]),
        ("bytes=990-", &data[990..]),
        ("bytes=-5", &data[995..]),
    ] {
        let r = f
            .req(Method::GET, "c/o")
            .header("Range", range)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT, "{range}");
        assert!(
            r.headers()["content-range"]
                .to_str()
                .unwrap()
                .ends_with("/1000")
        );
        assert_eq!(r.bytes().await.unwrap().as_ref(), want, "{range}");
    }
    let r = f
        .req(Method::GET, "c/o")
        .header("Range", "bytes=1000-")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(r.headers()["content-range"], "bytes */1000");
    let r = f
        .req(Method::GET, "c/o")
        .header("Range", "bytes=0-1,5-6")
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::OK,
        "multiple ranges get the whole object"
    );
    assert_eq!(r.bytes().await.unwrap().len(), 1000);
}

#[tokio::test]
async fn dynamic_large_objects_concatenate_their_segments() {
    let f = Files::new().await;
    f.put("exports", vec![]).await;
    let segs: Vec<Vec<u8>> = (0..3).map(|i| pattern(MIB + i * 1000, i as u8)).collect();
    for (i, s) in segs.iter().enumerate() {
        f.put(&format!("exports/img.vhd-{:05}", i + 1), s.clone())
            .await;
    }
    let manifest = f
        .req(Method::PUT, "exports/img.vhd")
        .header("X-Object-Manifest", "exports/img.vhd-")
        .header("Content-Length", "0")
        .send()
        .await
        .unwrap();
    assert_eq!(manifest.status(), StatusCode::CREATED);
    let whole: Vec<u8> = segs.concat();
    let head = f.req(Method::HEAD, "exports/img.vhd").send().await.unwrap();
    assert_eq!(
        head.headers()["content-length"],
        whole.len().to_string().as_str()
    );
    assert_eq!(head.headers()["x-object-manifest"], "exports/img.vhd-");
    let etags: String = segs.iter().map(|s| md5_hex(s)).collect();
    assert_eq!(
        head.headers()["etag"],
        format!("\"{}\"", md5_hex(etags.as_bytes())).as_str()
    );
    assert_eq!(
        f.get("exports/img.vhd")
            .await
            .bytes()
            .await
            .unwrap()
            .as_ref(),
        &whole[..]
    );
    // A range across a segment boundary.
    let r = f
        .req(Method::GET, "exports/img.vhd")
        .header("Range", format!("bytes={}-{}", MIB - 5, MIB + 4))
        .send()
        .await;
    assert_eq!(
        r.unwrap().bytes().await.unwrap().as_ref(),
        &whole[MIB - 5..MIB + 5]
    );
    // The listing shows the manifest as 0 bytes with the md5 of nothing.
    let list: Vec<serde_json::Value> = f
        .get("exports?format=json&prefix=img.vhd")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list[0]["name"], "img.vhd");
    assert_eq!(list[0]["bytes"], 0);
    assert_eq!(list[0]["hash"], md5_hex(b""));
    // ?multipart-manifest=get returns the manifest itself.
    let m = f.get("exports/img.vhd?multipart-manifest=get").await;
    assert_eq!(m.bytes().await.unwrap().len(), 0);
    // A missing segment silently shortens the object, as the real service does.
    f.req(Method::DELETE, "exports/img.vhd-00002")
        .send()
        .await
        .unwrap();
    let short = f.get("exports/img.vhd").await;
    assert_eq!(short.status(), StatusCode::OK);
    assert_eq!(
        short.bytes().await.unwrap().len(),
        segs[0].len() + segs[2].len()
    );
}

async fn put_segments(f: &Files, n: usize) -> Vec<Vec<u8>> {
    f.put("segs", vec![]).await;
    let segs: Vec<Vec<u8>> = (0..n)
        .map(|i| pattern(MIB + (i % 2) * 333, i as u8))
        .collect();
    for (i, s) in segs.iter().enumerate() {
        f.put(&format!("segs/big/{i:06}"), s.clone()).await;
    }
    segs
}

fn manifest(segs: &[Vec<u8>]) -> serde_json::Value {
    serde_json::Value::Array(
        segs.iter()
            .enumerate()
            .map(|(i, s)| serde_json::json!({"path": format!("/segs/big/{i:06}"), "etag": md5_hex(s), "size_bytes": s.len()}))
            .collect(),
    )
}

#[tokio::test]
async fn static_large_objects_put_get_and_delete() {
    let f = Files::new().await;
    let segs = put_segments(&f, 3).await;
    f.put("dst", vec![]).await;
    let body = serde_json::to_vec(&manifest(&segs)).unwrap();
    let put = f
        .req(Method::PUT, "dst/img.vhd?multipart-manifest=put")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), StatusCode::CREATED);
    let etags: String = segs.iter().map(|s| md5_hex(s)).collect();
    let want_etag = format!("\"{}\"", md5_hex(etags.as_bytes()));
    assert_eq!(put.headers()["etag"], want_etag.as_str());
    let head = f.req(Method::HEAD, "dst/img.vhd").send().await.unwrap();
    assert_eq!(head.headers()["x-static-large-object"], "True");
    assert_eq!(head.headers()["etag"], want_etag.as_str());
    let whole = segs.concat();
    assert_eq!(
        f.get("dst/img.vhd").await.bytes().await.unwrap().as_ref(),
        &whole[..]
    );
    let listed: Vec<serde_json::Value> = f
        .get("dst/img.vhd?multipart-manifest=get")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listed.len(), 3);
    assert_eq!(listed[1]["name"], "/segs/big/000001");
    assert_eq!(listed[1]["hash"], md5_hex(&segs[1]));
    let del = f
        .req(Method::DELETE, "dst/img.vhd?multipart-manifest=delete")
        .send()
        .await
        .unwrap();
    assert_eq!(del.status(), StatusCode::OK);
    let del: serde_json::Value = del.json().await.unwrap();
    assert_eq!(del["Number Deleted"], 4);
    assert_eq!(
        f.req(Method::HEAD, "segs/big/000000")
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn slo_manifests_are_checked_against_their_segments() {
    let f = Files::new().await;
    let segs = put_segments(&f, 2).await;
    f.put("dst", vec![]).await;
    let put = |m: serde_json::Value| {
        let body = serde_json::to_vec(&m).unwrap();
        f.req(Method::PUT, "dst/x?multipart-manifest=put")
            .body(body)
            .send()
    };
    let mut missing = manifest(&segs);
    missing[1]["path"] = "/segs/big/nope".into();
    let mut wrong_etag = manifest(&segs);
    wrong_etag[0]["etag"] = md5_hex(b"other").into();
    let mut wrong_size = manifest(&segs);
    wrong_size[0]["size_bytes"] = 5.into();
    for (m, why) in [
        (missing, "404 Not Found"),
        (wrong_etag, "Etag Mismatch"),
        (wrong_size, "Size Mismatch"),
    ] {
        let r = put(m).await.unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        assert!(r.text().await.unwrap().contains(why), "{why}");
    }
    f.put("segs/tiny", vec![1; 10]).await;
    let mut small_first = manifest(&segs);
    small_first[0] = serde_json::json!({"path": "/segs/tiny", "etag": null, "size_bytes": null});
    assert!(
        put(small_first)
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
            .contains("Too Small")
    );
    let too_many = serde_json::Value::Array(vec![serde_json::json!({"path": "/segs/tiny"}); 1001]);
    assert_eq!(
        put(too_many).await.unwrap().status(),
        StatusCode::BAD_REQUEST
    );
    let not_json = f
        .req(Method::PUT, "dst/x?multipart-manifest=put")
        .body("nope")
        .send()
        .await
        .unwrap();
    assert_eq!(not_json.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        f.req(Method::HEAD, "dst/x").send().await.unwrap().status(),
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn listings_page_with_limit_marker_and_prefix() {
    let f = Files::new().await;
    f.put("c", vec![]).await;
    for name in ["a/1", "a/2", "a/3", "b/1"] {
        f.put(&format!("c/{name}"), name.as_bytes().to_vec()).await;
    }
    let names = |v: Vec<serde_json::Value>| {
        v.iter()
            .map(|o| o["name"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    let page: Vec<serde_json::Value> = f.get("c?format=json&limit=2").await.json().await.unwrap();
    assert_eq!(names(page), ["a/1", "a/2"]);
    let page: Vec<serde_json::Value> = f
        .get("c?format=json&limit=2&marker=a/2")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(names(page), ["a/3", "b/1"]);
    let page: Vec<serde_json::Value> = f.get("c?format=json&prefix=b/").await.json().await.unwrap();
    assert_eq!(names(page.clone()), ["b/1"]);
    assert_eq!(page[0]["hash"], md5_hex(b"b/1"));
    assert_eq!(page[0]["bytes"], 3);
    let page: Vec<serde_json::Value> = f
        .get("c?format=json&end_marker=a/3")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(names(page), ["a/1", "a/2"]);
    assert_eq!(
        f.get("c").await.text().await.unwrap(),
        "a/1\na/2\na/3\nb/1\n"
    );
    assert_eq!(f.get("c?prefix=zzz").await.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        f.get("nope?format=json").await.status(),
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn bulk_delete_reports_counts() {
    let f = Files::new().await;
    f.put("c", vec![]).await;
    f.put("empty", vec![]).await;
    f.put("c/x y", b"1".to_vec()).await;
    f.put("c/z", b"2".to_vec()).await;
    let body = "/c/x%20y\n/c/z\n/c/missing\n/empty\n/c\n";
    let r = f
        .req(Method::DELETE, "?bulk-delete")
        .header("Content-Type", "text/plain")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["Number Deleted"], 4, "{v}");
    assert_eq!(v["Number Not Found"], 1, "{v}");
}

#[tokio::test]
async fn stats_count_bytes_requests_and_creations() {
    let f = Files::new().await;
    f.put("c", vec![]).await;
    f.put("c/o", vec![1; 1000]).await;
    let _ = f.get("c/o").await.bytes().await.unwrap();
    let s = f.sim.stats();
    assert_eq!(s.bytes_in["DFW"], 1000);
    assert_eq!(s.bytes_out["DFW"], 1000);
    assert_eq!(s.requests["PUT object"], 1);
    assert_eq!(s.requests["GET object"], 1);
    assert_eq!(s.created["object"], ["DFW/c/o"]);
    assert_eq!(s.created["container"], ["DFW/c"]);
    let over_http: serde_json::Value = f
        .http
        .get(format!("{}/_sim/stats", f.sim.base_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(over_http["bytes_in"]["DFW"], 1000);
}
