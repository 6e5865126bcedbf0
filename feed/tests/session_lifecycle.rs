//! The user-data credentials' lifecycles and the periodic REST schedules, driven through time
//! and outcomes exactly as the I/O and hot threads will drive them. Replies reach the margin
//! session through the real frame parser, from the JSON Binance sends.

use engine::types::{AccountId, MarketKey, Symbol, TriggerSource, Venue};
use feed::rest::{ListenKey, ListenToken, parse_listen_key, parse_listen_token};
use feed::session::{
    Backoff, ListenKeyCall, ListenKeyConfig, ListenKeyLifecycle, ListenTokenConfig,
    MarginUserSession, PriceFallback, ReconcileCall, Reconciler, SessionNews,
};
use feed::wire::{Asset, Connection, FrameParser, Parsed};

const MIN: u64 = 60_000;
const HOUR: u64 = 60 * MIN;

fn key(text: &str) -> ListenKey {
    parse_listen_key(format!(r#"{{"listenKey":"{text}"}}"#).into_bytes().as_mut_slice()).unwrap()
}

fn token(text: &str, expires_ms: u64) -> ListenToken {
    let body = format!(r#"{{"token":"{text}","expirationTime":{expires_ms}}}"#);
    parse_listen_token(body.into_bytes().as_mut_slice()).unwrap()
}

fn sym(s: &str) -> Symbol {
    Symbol::new(s.as_bytes()).unwrap()
}

#[test]
fn listen_key_is_created_kept_alive_and_recreated_when_lost() {
    let mut life = ListenKeyLifecycle::new(ListenKeyConfig::default(), 1_000);
    assert_eq!(life.due(999), None, "nothing before the start time");
    assert_eq!(life.due(1_000), Some(ListenKeyCall::Create));
    assert_eq!(life.due(1_001), None, "one call at a time");
    assert!(life.on_key(key("k1"), 1_500), "a first key moves the stream");
    assert_eq!(life.stream_path().as_deref(), Some("/private/ws/k1"));

    assert_eq!(life.due(1_500 + 30 * MIN - 1), None);
    assert_eq!(life.due(1_500 + 30 * MIN), Some(ListenKeyCall::KeepAlive));
    assert!(!life.on_key(key("k1"), 1_500 + 30 * MIN), "the same key: the stream stays");

    // Binance forgot the key (-1125 on keepalive): create at once, then move the stream.
    let t = 1_500 + 60 * MIN;
    assert_eq!(life.due(t), Some(ListenKeyCall::KeepAlive));
    life.on_key_lost(t);
    assert_eq!(life.stream_path(), None);
    assert_eq!(life.due(t), Some(ListenKeyCall::Create));
    assert!(life.on_key(key("k2"), t + 10));
    assert_eq!(life.stream_path().as_deref(), Some("/private/ws/k2"));

    // `listenKeyExpired` on the stream takes the same path.
    life.on_key_lost(t + 20);
    assert_eq!(life.due(t + 20), Some(ListenKeyCall::Create));
}

#[test]
fn listen_key_failures_back_off_and_keep_the_key() {
    let config =
        ListenKeyConfig { keepalive_every_ms: 30 * MIN, retry: Backoff::new(1_000, 4_000) };
    let mut life = ListenKeyLifecycle::new(config, 0);
    assert_eq!(life.due(0), Some(ListenKeyCall::Create));
    life.on_key(key("k1"), 0);
    let mut t = 30 * MIN;
    let mut waits = Vec::new();
    for _ in 0..4 {
        assert_eq!(life.due(t), Some(ListenKeyCall::KeepAlive));
        life.on_failure(t);
        let next = life.next_due_ms().unwrap();
        waits.push(next - t);
        t = next;
    }
    assert_eq!(waits, [1_000, 2_000, 4_000, 4_000]);
    assert_eq!(life.stream_path().as_deref(), Some("/private/ws/k1"));
    life.on_kept_alive(t);
    assert_eq!(life.next_due_ms(), Some(t + 30 * MIN), "success resets the backoff");
}

#[test]
fn listen_key_never_prints() {
    let mut life = ListenKeyLifecycle::new(ListenKeyConfig::default(), 0);
    life.due(0);
    life.on_key(key("SeCrEtKeY123"), 0);
    assert!(!format!("{life:?}").contains("SeCrEtKeY123"));
}

/// The API connection as the hot thread sees it: request frames out, replies parsed in.
struct ApiConnection {
    parser: FrameParser,
}

impl ApiConnection {
    fn new() -> Self {
        let conn = Connection::isolated_margin_user(AccountId(0), sym("BTCUSDT"), Asset::USDT);
        ApiConnection { parser: FrameParser::new(conn) }
    }

    fn reply(&mut self, session: &mut MarginUserSession, json: &str, now_ms: u64) -> SessionNews {
        let mut bytes = json.as_bytes().to_vec();
        let parsed = self.parser.parse(&mut bytes, |_| {}).expect("a reply Binance sends");
        let Parsed::Control(control) = parsed else { panic!("not a control frame: {parsed:?}") };
        session.on_control(control, now_ms)
    }
}

/// Sent frames, each checked to be JSON with the fields Binance requires.
fn sent(session: &mut MarginUserSession) -> Vec<(i64, String, String)> {
    session
        .drain_outbox()
        .map(|frame| {
            let mut bytes = frame.clone().into_bytes();
            let value: simd_json::OwnedValue = simd_json::to_owned_value(&mut bytes).expect("JSON");
            use simd_json::prelude::*;
            let id = value.get("id").and_then(|v| v.as_i64()).expect("integer id");
            let method = value.get("method").and_then(|v| v.as_str()).expect("method").to_owned();
            let params = value.get("params").expect("params").encode();
            (id, method, params)
        })
        .collect()
}

#[test]
fn margin_session_subscribes_renews_without_a_gap_and_recovers() {
    let btc = sym("BTCUSDT");
    let config = ListenTokenConfig::default();
    let mut session = MarginUserSession::new(config, &[btc], 0);
    let mut api = ApiConnection::new();

    assert_eq!(session.due_token_request(0), Some(btc));
    assert_eq!(session.due_token_request(0), None, "one request in flight");
    session.on_token(btc, token("tokA", 24 * HOUR), 10);
    assert!(sent(&mut session).is_empty(), "nothing goes out before the connection is up");

    session.on_connected(20);
    let frames = sent(&mut session);
    assert_eq!(frames.len(), 1);
    let (id, method, params) = &frames[0];
    assert_eq!(method, "userDataStream.subscribe.listenToken");
    assert_eq!(params, r#"{"listenToken":"tokA"}"#);
    assert!(!session.ready());
    let news = api.reply(
        &mut session,
        &format!(r#"{{"id":{id},"status":200,"result":{{"subscriptionId":0}}}}"#),
        30,
    );
    assert_eq!(news, SessionNews::Subscribed { symbol: btc, subscription: 0 });
    assert!(session.ready());

    // Renewal one hour before the end: the old subscription keeps delivering until the new one
    // is confirmed, and only then is it unsubscribed.
    let renew_at = 23 * HOUR;
    assert_eq!(session.next_due_ms(), Some(renew_at));
    assert_eq!(session.due_token_request(renew_at - 1), None);
    assert_eq!(session.due_token_request(renew_at), Some(btc));
    session.on_token(btc, token("tokB", 47 * HOUR), renew_at + 5);
    let frames = sent(&mut session);
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0].2, r#"{"listenToken":"tokB"}"#);
    assert!(session.ready(), "still delivering on the old subscription");
    let news = api.reply(
        &mut session,
        &format!(r#"{{"id":{},"status":200,"result":{{"subscriptionId":1}}}}"#, frames[0].0),
        renew_at + 10,
    );
    assert_eq!(news, SessionNews::Subscribed { symbol: btc, subscription: 1 });
    let frames = sent(&mut session);
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0].1, "userDataStream.unsubscribe");
    assert_eq!(frames[0].2, r#"{"subscriptionId":0}"#);
    assert_eq!(session.subscription(btc), Some(1));

    // The retired subscription's end is no news; the live one's is.
    let end = r#"{"subscriptionId":0,"event":{"e":"eventStreamTerminated","E":1}}"#;
    assert_eq!(api.reply(&mut session, end, renew_at + 20), SessionNews::Unrelated);
    assert!(session.ready());
    let end = r#"{"subscriptionId":1,"event":{"e":"eventStreamTerminated","E":2}}"#;
    assert_eq!(api.reply(&mut session, end, renew_at + 30), SessionNews::Lost { symbol: btc });
    assert!(!session.ready());
    assert_eq!(session.due_token_request(renew_at + 30), Some(btc), "a new token at once");

    // A reconnect forgets subscriptions: a usable token is subscribed again straight away.
    session.on_token(btc, token("tokC", 48 * HOUR), renew_at + 40);
    let first = sent(&mut session);
    assert_eq!(first.len(), 1);
    session.on_disconnected();
    session.on_connected(renew_at + 50);
    let frames = sent(&mut session);
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0].2, r#"{"listenToken":"tokC"}"#);
    // The reply to the pre-disconnect request is stale: ignored.
    let stale = format!(r#"{{"id":{},"status":200,"result":{{"subscriptionId":7}}}}"#, first[0].0);
    assert_eq!(api.reply(&mut session, &stale, renew_at + 55), SessionNews::Unrelated);
    assert!(!session.ready());
}

#[test]
fn margin_session_handles_refusals() {
    let btc = sym("BTCUSDT");
    let config = ListenTokenConfig { retry: Backoff::new(1_000, 8_000), ..Default::default() };
    let mut session = MarginUserSession::new(config, &[btc], 0);
    let mut api = ApiConnection::new();
    session.due_token_request(0);
    session.on_connected(0);
    session.on_token(btc, token("tokA", 24 * HOUR), 0);
    let (id, ..) = sent(&mut session).remove(0);

    // -1209: the token is no good; a new one is requested at once.
    let invalid = format!(
        r#"{{"id":{id},"status":400,"error":{{"code":-1209,"msg":"Invalid listenToken."}}}}"#
    );
    assert_eq!(api.reply(&mut session, &invalid, 100), SessionNews::Lost { symbol: btc });
    assert_eq!(session.due_token_request(100), Some(btc));
    session.on_token(btc, token("tokB", 24 * HOUR), 110);
    let (id, ..) = sent(&mut session).remove(0);

    // Another failure: resubscribe after the backoff, with the same token.
    let busy = format!(r#"{{"id":{id},"status":503,"error":{{"code":-1008,"msg":"busy"}}}}"#);
    assert_eq!(api.reply(&mut session, &busy, 200), SessionNews::Lost { symbol: btc });
    session.on_timer(1_199);
    assert!(sent(&mut session).is_empty());
    session.on_timer(1_200);
    let frames = sent(&mut session);
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0].2, r#"{"listenToken":"tokB"}"#);
    let ok = format!(r#"{{"id":{},"status":200,"result":{{"subscriptionId":3}}}}"#, frames[0].0);
    assert_eq!(
        api.reply(&mut session, &ok, 1_300),
        SessionNews::Subscribed { symbol: btc, subscription: 3 }
    );

    // Renewal refused with -2035 (one subscription per account): drop the old, then subscribe.
    let renew_at = 110 + 23 * HOUR;
    assert_eq!(session.due_token_request(renew_at), Some(btc));
    session.on_token(btc, token("tokC", renew_at + 24 * HOUR), renew_at);
    let (id, ..) = sent(&mut session).remove(0);
    let dup = format!(
        r#"{{"id":{id},"status":400,"error":{{"code":-2035,"msg":"User Data Stream subscription already active."}}}}"#
    );
    assert_eq!(api.reply(&mut session, &dup, renew_at + 1), SessionNews::Lost { symbol: btc });
    let frames = sent(&mut session);
    let methods: Vec<&str> = frames.iter().map(|f| f.1.as_str()).collect();
    assert_eq!(methods, ["userDataStream.unsubscribe", "userDataStream.subscribe.listenToken"]);
    assert_eq!(frames[0].2, r#"{"subscriptionId":3}"#);
    assert_eq!(frames[1].2, r#"{"listenToken":"tokC"}"#);
}

#[test]
fn margin_session_never_sends_a_token_that_would_break_the_frame() {
    let btc = sym("BTCUSDT");
    let mut session = MarginUserSession::new(ListenTokenConfig::default(), &[btc], 0);
    session.due_token_request(0);
    session.on_connected(0);
    session.on_token(btc, token(r#"ab\"},\"x"#, 24 * HOUR), 0);
    assert!(sent(&mut session).is_empty());
    assert_eq!(session.due_token_request(1), Some(btc), "asks for a proper one");
}

#[test]
fn reconciler_runs_rounds_one_at_a_time_and_follows_trade_ids() {
    let (btc, eth) = (sym("BTCUSDT"), sym("ETHUSDT"));
    let mut r = Reconciler::new(20_000, true, &[btc, eth], 0);
    let round: Vec<_> = std::iter::from_fn(|| r.due(0)).collect();
    assert_eq!(
        round,
        [
            ReconcileCall::UsdmPositions,
            ReconcileCall::MarginAccount,
            ReconcileCall::MarginTrades { symbol: btc, from_id: None },
            ReconcileCall::MarginTrades { symbol: eth, from_id: None },
        ]
    );
    assert_eq!(r.rounds_done(), 0);
    r.done(round[0], true, None);
    r.done(round[1], false, None);
    r.done(round[2], true, Some(41));
    assert_eq!(r.due(25_000), None, "the last call of the round is still out");
    r.done(round[3], true, None);
    assert_eq!(r.rounds_done(), 1);
    assert_eq!(r.rounds_succeeded(), 0, "a call of that round failed");
    assert_eq!(r.due(19_999), None);
    let round: Vec<_> = std::iter::from_fn(|| r.due(20_000)).collect();
    assert_eq!(round[2], ReconcileCall::MarginTrades { symbol: btc, from_id: Some(42) });
    assert_eq!(round[3], ReconcileCall::MarginTrades { symbol: eth, from_id: None });
    for call in round {
        r.done(call, true, None);
    }
    assert_eq!((r.rounds_done(), r.rounds_succeeded()), (2, 1));
    // A user-data gap hurries the next round.
    assert_eq!(r.due(20_001), None);
    r.hurry(20_001);
    assert_eq!(r.due(20_001), Some(ReconcileCall::UsdmPositions));
}

#[test]
fn price_fallback_polls_stale_markets_once_per_period() {
    let btc = MarketKey { venue: Venue::Usdm, symbol: sym("BTCUSDT") };
    let eth = MarketKey { venue: Venue::Margin, symbol: sym("ETHUSDT") };
    let mut fallback = PriceFallback::new(1_000);
    assert_eq!(fallback.due(0), None);
    fallback.set_stale([(btc, TriggerSource::Mark)], 0);
    assert_eq!(fallback.due(0), Some((btc, TriggerSource::Mark)));
    assert_eq!(fallback.due(0), None);
    // The hot thread repeats the set every turn: the schedule holds.
    fallback.set_stale([(btc, TriggerSource::Mark), (eth, TriggerSource::Last)], 500);
    assert_eq!(fallback.due(500), Some((eth, TriggerSource::Last)));
    assert_eq!(fallback.due(999), None);
    assert_eq!(fallback.due(1_000), Some((btc, TriggerSource::Mark)));
    // BTC's stream is back: it drops out.
    fallback.set_stale([(eth, TriggerSource::Last)], 1_200);
    assert_eq!(fallback.due(1_500), Some((eth, TriggerSource::Last)));
    assert_eq!(fallback.due(2_000), None);
    fallback.set_stale([], 2_000);
    assert!(!fallback.is_polling());
}
