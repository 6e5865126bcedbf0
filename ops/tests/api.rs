//! The control API over a real loopback socket, with a real engine answering on its own thread
//! the way the hot loop does: every route, every refusal, and nothing a request sends can stop
//! the server.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

use engine::events::{Event, VecSink};
use engine::types::AccountId;
use engine::{Config, Engine, Nanos};
use robsond::api::{self, Answer, ApiConfig, Command, Probes};
use serde_json::{Value, json};

struct FakeProbes {
    ready: AtomicBool,
}

impl Probes for FakeProbes {
    fn health(&self) -> (bool, Value) {
        (true, json!({ "hot_loop": "ok" }))
    }
    fn readiness(&self, _standby_ok: bool) -> (bool, Value) {
        let ready = self.ready.load(Ordering::Relaxed);
        (ready, json!({ "streams": ready }))
    }
    fn metrics(&self) -> String {
        "robsond_up 1\n".to_owned()
    }
}

struct Daemon {
    base: String,
    probes: Arc<FakeProbes>,
}

const TOKEN: &str = "test-token-0123";

fn start(token: Option<&str>) -> Daemon {
    let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").unwrap());
    let base = format!("http://{}", server.server_addr().to_ip().unwrap());
    let (tx, rx) = crossbeam_channel::bounded(64);
    // The hot loop's side: a real engine answering commands.
    thread::spawn(move || {
        let mut engine = Engine::new(Config::default());
        let mut sink = VecSink::default();
        let mut now = Nanos::from_millis(1_000);
        engine.on_event(Event::Lease { held: true }, now, &mut sink);
        loop {
            now = now.saturating_add_millis(1);
            api::drain_commands(&rx, |command| match command {
                Command::Engine(event) => Answer::Engine(engine.on_event(event, now, &mut sink)),
                Command::Positions => Answer::Positions(engine.positions().collect(), now),
            });
            thread::sleep(Duration::from_millis(1));
        }
    });
    let probes = Arc::new(FakeProbes { ready: AtomicBool::new(false) });
    let config = ApiConfig {
        token: token.map(|t| t.as_bytes().to_vec()),
        account: AccountId(0),
        command_timeout: Duration::from_secs(5),
    };
    let served = Arc::clone(&server);
    let p: Arc<dyn Probes> = probes.clone();
    thread::spawn(move || api::serve(served, config, tx, p));
    Daemon { base, probes }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder().http_status_as_error(false).build().into()
}

fn call(
    d: &Daemon,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> (u16, Value) {
    let url = format!("{}{}", d.base, path);
    let agent = agent();
    let mut req = ureq::http::Request::builder().method(method).uri(&url);
    if let Some(t) = token {
        req = req.header("Authorization", format!("Bearer {t}"));
    }
    let req = req.body(body.unwrap_or("").to_owned()).unwrap();
    let mut resp = agent.run(req).unwrap();
    let status = resp.status().as_u16();
    let text = resp.body_mut().read_to_string().unwrap();
    let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, value)
}

#[test]
fn arm_list_disarm_halt_resume_and_the_safety_net() {
    let d = start(Some(TOKEN));
    let t = Some(TOKEN);
    let (status, body) = call(
        &d,
        "POST",
        "/v1/arm",
        t,
        Some(
            r#"{"venue":"usdm","symbol":"btcusdt","side":"long","capital":"1000","risk_pct":"1","technical_stop":"49000.5","ma_fast":3,"ma_slow":8}"#,
        ),
    );
    assert_eq!(status, 201, "{body}");
    let id = body["id"].as_u64().unwrap();

    let (status, body) = call(
        &d,
        "POST",
        "/v1/arm",
        t,
        Some(r#"{"venue":"usdm","symbol":"BTCUSDT","side":"long"}"#),
    );
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["reason"], "AlreadyArmed");

    let (status, body) = call(&d, "GET", "/v1/positions", t, None);
    assert_eq!(status, 200);
    let positions = body["positions"].as_array().unwrap();
    assert_eq!(positions.len(), 1);
    assert_eq!(positions[0]["id"], id);
    assert_eq!(positions[0]["symbol"], "BTCUSDT");
    assert_eq!(positions[0]["modality"], "core");
    assert_eq!(positions[0]["state"], "armed");
    assert!(positions[0]["age_ms"].as_u64().is_some());

    let (status, _) = call(&d, "PUT", "/v1/safety-net/ETHUSDT", t, Some(r#"{"pct":"1.5"}"#));
    assert_eq!(status, 200);
    let (status, body) = call(&d, "PUT", "/v1/safety-net/ETHUSDT", t, Some(r#"{"pct":1.5}"#));
    assert_eq!((status, body["field"].as_str()), (400, Some("pct")), "{body}");

    assert_eq!(call(&d, "POST", "/v1/halt", t, Some(r#"{"flatten":true}"#)).0, 200);
    assert_eq!(call(&d, "POST", "/v1/halt", t, None).0, 200);
    assert_eq!(call(&d, "POST", "/v1/resume", t, None).0, 200);

    assert_eq!(call(&d, "DELETE", &format!("/v1/arm/{id}"), t, None).0, 200);
    assert_eq!(call(&d, "DELETE", &format!("/v1/arm/{id}"), t, None).0, 404);
    let (_, body) = call(&d, "GET", "/v1/positions", t, None);
    assert_eq!(body["positions"].as_array().unwrap().len(), 0);
}

#[test]
fn bad_requests_get_the_field_and_the_reason() {
    let d = start(Some(TOKEN));
    let t = Some(TOKEN);
    let cases = [
        (r#"{"symbol":"BTCUSDT","side":"long"}"#, "venue"),
        (r#"{"venue":"spot","symbol":"BTCUSDT","side":"long"}"#, "venue"),
        (r#"{"venue":"usdm","symbol":"BTC/USDT","side":"long"}"#, "symbol"),
        (r#"{"venue":"usdm","symbol":"BTCUSDT","side":"up"}"#, "side"),
        (r#"{"venue":"usdm","symbol":"BTCUSDT","side":"long","capital":1000.5}"#, "capital"),
        (r#"{"venue":"usdm","symbol":"BTCUSDT","side":"long","capital":"-5"}"#, "capital"),
        (r#"{"venue":"usdm","symbol":"BTCUSDT","side":"long","capital":"1e3"}"#, "capital"),
        (r#"{"venue":"usdm","symbol":"BTCUSDT","side":"long","risk_pct":"101"}"#, "risk_pct"),
        (r#"{"venue":"usdm","symbol":"BTCUSDT","side":"long","ma_fast":0}"#, "ma_fast"),
        (r#"{"venue":"usdm","symbol":"BTCUSDT","side":"long","leverage":5}"#, "leverage"),
        (r#"[1,2]"#, "body"),
        (r#"{"venue":"#, "body"),
        ("\u{0}\u{1}garbage", "body"),
    ];
    for (body, field) in cases {
        let (status, answer) = call(&d, "POST", "/v1/arm", t, Some(body));
        assert_eq!(status, 400, "{body} → {answer}");
        assert_eq!(answer["field"], field, "{body} → {answer}");
        assert!(answer["error"].as_str().is_some_and(|e| !e.is_empty()));
    }
    // The engine's own refusals are 400 with its reason.
    let (status, answer) = call(
        &d,
        "POST",
        "/v1/arm",
        t,
        Some(r#"{"venue":"usdm","symbol":"BTCUSDT","side":"long","ma_fast":9,"ma_slow":5}"#),
    );
    assert_eq!((status, answer["reason"].as_str()), (400, Some("BadPeriods")));
    assert_eq!(call(&d, "DELETE", "/v1/arm/abc", t, None).0, 400);
    assert_eq!(call(&d, "GET", "/v1/arm", t, None).0, 405);
    assert_eq!(call(&d, "GET", "/v1/nothing", t, None).0, 404);
    let big = format!(r#"{{"venue":"usdm","pad":"{}"}}"#, "x".repeat(70 * 1024));
    assert_eq!(call(&d, "POST", "/v1/arm", t, Some(&big)).0, 413);
    // Still serving after all that.
    assert_eq!(call(&d, "GET", "/v1/positions", t, None).0, 200);
}

#[test]
fn tokens_guard_the_control_api_but_not_the_probes() {
    let d = start(Some(TOKEN));
    assert_eq!(call(&d, "GET", "/v1/positions", None, None).0, 401);
    assert_eq!(call(&d, "GET", "/v1/positions", Some("test-token-0124"), None).0, 401);
    assert_eq!(call(&d, "GET", "/v1/positions", Some("test-token-01234"), None).0, 401);
    let (status, body) = call(&d, "GET", "/v1/positions", Some(TOKEN), None);
    assert_eq!(status, 200, "{body}");
    assert!(!body.to_string().contains(TOKEN));

    assert_eq!(call(&d, "GET", "/healthz", None, None).0, 200);
    let (status, body) = call(&d, "GET", "/readyz", None, None);
    assert_eq!((status, body["streams"].as_bool()), (503, Some(false)));
    d.probes.ready.store(true, Ordering::Relaxed);
    assert_eq!(call(&d, "GET", "/readyz", None, None).0, 200);
    let (status, body) = call(&d, "GET", "/metrics", None, None);
    assert_eq!((status, body.as_str()), (200, Some("robsond_up 1\n")));

    let off = start(None);
    let (status, body) = call(&off, "POST", "/v1/halt", Some("anything"), None);
    assert_eq!(status, 403, "{body}");
    assert_eq!(call(&off, "GET", "/healthz", None, None).0, 200);
}
