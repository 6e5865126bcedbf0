//! The CLI's side of the control API (`robsond status|positions|arm|disarm|halt|resume`): for
//! humans, tables; with `--json`, the daemon's own JSON. Holds no state and decides nothing.

use std::process::ExitCode;

use serde_json::Value;

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Output {
    Table,
    Json,
}

pub struct ApiClient {
    base: String,
    token: Option<String>,
    output: Output,
    agent: ureq::Agent,
}

impl ApiClient {
    pub fn new(addr: &str, token: Option<String>, output: Output) -> ApiClient {
        let base = if addr.contains("://") { addr.to_owned() } else { format!("http://{addr}") };
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(std::time::Duration::from_secs(10)))
            .build()
            .into();
        ApiClient { base: base.trim_end_matches('/').to_owned(), token, output, agent }
    }

    fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> Result<(u16, Value), String> {
        let mut builder =
            ureq::http::Request::builder().method(method).uri(format!("{}{}", self.base, path));
        if let Some(token) = &self.token {
            builder = builder.header("Authorization", format!("Bearer {token}"));
        }
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let request = builder.body(body).map_err(|e| format!("bad request: {e}"))?;
        let mut response = self
            .agent
            .run(request)
            .map_err(|e| format!("cannot reach robsond at {}: {e}", self.base))?;
        let status = response.status().as_u16();
        let text = response.body_mut().read_to_string().map_err(|e| e.to_string())?;
        let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Ok((status, value))
    }

    fn finish(&self, status: u16, value: &Value, table: impl FnOnce(&Value) -> String) -> ExitCode {
        if self.output == Output::Json {
            println!("{value}");
        } else if (200..300).contains(&status) {
            print!("{}", table(value));
        } else {
            let error = value.get("error").and_then(Value::as_str).unwrap_or("request failed");
            match value.get("field").and_then(Value::as_str) {
                Some(field) => eprintln!("robsond: {status}: {field}: {error}"),
                None => eprintln!("robsond: {status}: {error}"),
            }
        }
        if (200..300).contains(&status) { ExitCode::SUCCESS } else { ExitCode::from(1) }
    }

    pub fn send(&self, method: &str, path: &str, body: Option<Value>) -> Result<ExitCode, String> {
        let (status, value) = self.request(method, path, body)?;
        Ok(self.finish(status, &value, |v| match v.get("id") {
            Some(id) => format!("ok: position {id}\n"),
            None => "ok\n".to_owned(),
        }))
    }

    pub fn status(&self) -> Result<ExitCode, String> {
        let (health_status, health) = self.request("GET", "/healthz", None)?;
        let (ready_status, ready) = self.request("GET", "/readyz", None)?;
        if self.output == Output::Json {
            println!("{}", serde_json::json!({ "healthz": health, "readyz": ready }));
        } else {
            println!("healthz  {}", if health_status == 200 { "ok" } else { "FAILING" });
            print_checks(&health);
            println!("readyz   {}", if ready_status == 200 { "ok" } else { "NOT READY" });
            print_checks(&ready);
        }
        Ok(if health_status == 200 && ready_status == 200 {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        })
    }

    pub fn positions(&self) -> Result<ExitCode, String> {
        let (status, value) = self.request("GET", "/v1/positions", None)?;
        Ok(self.finish(status, &value, positions_table))
    }
}

fn print_checks(body: &Value) {
    if let Some(checks) = body.as_object() {
        for (name, value) in checks {
            println!("  {name:<24} {value}");
        }
    }
}

/// A fixed-width table of positions, for a terminal.
pub fn positions_table(value: &Value) -> String {
    let columns = [
        "id", "venue", "symbol", "side", "modality", "state", "qty", "entry", "stop", "trigger",
        "age_ms",
    ];
    let rows: Vec<Vec<String>> = value
        .get("positions")
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .map(|p| {
                    columns
                        .iter()
                        .map(|c| match p.get(*c) {
                            Some(Value::String(s)) => s.clone(),
                            Some(Value::Null) | None => "-".to_owned(),
                            Some(other) => other.to_string(),
                        })
                        .collect()
                })
                .collect()
        })
        .unwrap_or_default();
    if rows.is_empty() {
        return "no positions\n".to_owned();
    }
    let widths: Vec<usize> = columns
        .iter()
        .enumerate()
        .map(|(i, c)| rows.iter().map(|r| r[i].len()).max().unwrap_or(0).max(c.len()))
        .collect();
    let mut out = String::new();
    let line = |cells: Vec<&str>| {
        cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect::<Vec<_>>().join("  ")
    };
    out.push_str(line(columns.to_vec()).trim_end());
    out.push('\n');
    for row in &rows {
        out.push_str(line(row.iter().map(String::as_str).collect()).trim_end());
        out.push('\n');
    }
    out
}
