//! API keys: only admins create and revoke; keys are shown once and stored hashed; revocation takes effect.

use crate::helpers::spawn_app;
use serde_json::{json, Value};

#[tokio::test]
async fn keys_are_admin_managed_and_revocable() {
    let app = spawn_app().await;
    let key = app.org_key("org-a").await;
    let r = app
        .client
        .post(app.url("/api/keys"))
        .bearer_auth(&key)
        .json(&json!({"orgId": "org-a", "name": "sneaky"}))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 403);
    let r = app
        .client
        .post(app.url("/api/keys"))
        .bearer_auth(&app.admin_token)
        .json(&json!({"orgId": "bad:org", "name": "x"}))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 400);

    let listed = app.get_json(&app.admin_token, "/api/keys").await;
    let text = listed.to_string();
    assert!(!text.contains(&key), "a listing never contains a key");
    assert!(!text.contains("keyHash"));
    let entry = listed
        .as_array()
        .expect("keys")
        .iter()
        .find(|k| k["orgId"] == "org-a")
        .expect("org-a key")
        .clone();
    assert!(key.starts_with(entry["prefix"].as_str().expect("prefix")));

    let id = entry["id"].as_str().expect("id");
    let r = app
        .client
        .delete(app.url(&format!("/api/keys/{id}")))
        .bearer_auth(&key)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 403);
    let r = app
        .client
        .delete(app.url(&format!("/api/keys/{id}")))
        .bearer_auth(&app.admin_token)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 204);
    let r = app
        .publish(&key, &json!({"eventType": "custom.x", "data": {}}))
        .await;
    assert_eq!(r.status(), 401, "a revoked key no longer works");
    let r = app
        .client
        .delete(app.url(&format!("/api/keys/{id}")))
        .bearer_auth(&app.admin_token)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 404);
    let audit = app
        .get_json(&app.admin_token, "/api/audit?action=key.delete")
        .await;
    assert_eq!(audit.as_array().expect("rows").len(), 1);
}

#[tokio::test]
async fn cli_creates_keys_that_the_server_accepts() {
    let app = spawn_app().await;
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args([
            "keys",
            "create",
            "--org",
            "org-cli",
            "--name",
            "from the cli",
        ])
        .env("SWITCHBOARD_DATABASE_URL", &app.config.database.url)
        .output()
        .expect("run cli");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let key = stdout
        .lines()
        .find_map(|l| l.strip_prefix("key: "))
        .expect("key line")
        .trim()
        .to_string();
    let r = app
        .publish(&key, &json!({"eventType": "custom.cli", "data": {}}))
        .await;
    assert_eq!(r.status(), 201);
    let event: Value = r.json().await.expect("json");
    assert_eq!(event["orgId"], "org-cli");
}

#[tokio::test]
async fn config_command_hides_secrets() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .arg("config")
        .env("SWITCHBOARD_ADMIN_TOKEN", "very-secret-token")
        .env("SWITCHBOARD_HUB_BATCH_MAX_EVENTS", "77")
        .output()
        .expect("run cli");
    assert!(output.status.success());
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("batch_max_events = 77"));
    assert!(!stdout.contains("very-secret-token"));
    assert!(stdout.contains("<hidden>"));
    let bad = std::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .arg("config")
        .env("SWITCHBOARD_HUB_QUEUE_CAPACITY", "lots")
        .output()
        .expect("run cli");
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("SWITCHBOARD_HUB_QUEUE_CAPACITY"));
}

/// Found by schemathesis: an admin could revoke the bootstrap admin key itself (`DELETE /api/keys/admin`), after
/// which every admin request was 401 until a restart.
#[tokio::test]
async fn bootstrap_admin_key_cannot_be_revoked() {
    let app = spawn_app().await;
    let r = app
        .client
        .delete(app.url("/api/keys/admin"))
        .bearer_auth(&app.admin_token)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 409);
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["error"]["code"], "admin_key");
    let r = app.get(&app.admin_token, "/api/keys").await;
    assert_eq!(r.status(), 200, "the admin key still works");
}
