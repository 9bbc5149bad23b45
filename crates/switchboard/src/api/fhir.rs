//! The FHIR R4 REST API under `/fhir`: create, read, vread, update (or create with an id), delete, type search,
//! and the CapabilityStatement. Org-scoped by API key; every write commits its `fhir.*` event in the same
//! transaction; errors are OperationOutcomes.

use super::extract::authenticate_key;
use super::AppState;
use crate::auth::Scope;
use crate::event::{EventType, NewEvent, Source, WriteAction};
use crate::fhir::outcome::{FhirError, FHIR_JSON};
use crate::fhir::search::{supported_params, SearchQuery};
use crate::fhir::service::{self, check_body, check_target, WriteRequest};
use crate::fhir::types::R4_RESOURCE_TYPES;
use crate::store::StoredResource;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde_json::{json, Value};

/// Header with which an admin key names the org it acts for.
pub const ORG_HEADER: &str = "x-switchboard-org";

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/fhir/metadata", get(metadata))
        .route("/fhir/{resource_type}", get(search).post(create))
        .route(
            "/fhir/{resource_type}/{id}",
            get(read).put(update).delete(remove),
        )
        .route("/fhir/{resource_type}/{id}/_history/{version}", get(vread))
}

/// The org and key of a FHIR request.
struct FhirCaller {
    key_id: String,
    org: String,
}

async fn caller(state: &AppState, headers: &HeaderMap) -> Result<FhirCaller, FhirError> {
    let unauthorized = |msg: &str| FhirError::new(StatusCode::UNAUTHORIZED, "login", msg);
    let key = headers
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.strip_prefix("Bearer "))
        .map(str::trim)
        .ok_or_else(|| unauthorized("missing Authorization: Bearer <api key>"))?;
    let caller = authenticate_key(state, key)
        .await
        .map_err(|e| unauthorized(&e.message))?;
    let org = match caller.scope {
        Scope::Org(org) => org,
        Scope::Admin => headers
            .get(ORG_HEADER)
            .and_then(|h| h.to_str().ok())
            .filter(|org| crate::event::validate_org_id(org).is_ok())
            .map(str::to_string)
            .ok_or_else(|| {
                FhirError::invalid(format!(
                    "an admin key must name the org in the {ORG_HEADER} header"
                ))
            })?,
    };
    Ok(FhirCaller {
        key_id: caller.key_id,
        org,
    })
}

/// The request body as JSON. A body over `http.max_body_bytes` (or one that cannot be read) is answered with an
/// OperationOutcome like every other FHIR error, not axum's plain-text rejection.
fn parse_body(
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Value, FhirError> {
    let body = body.map_err(|rejection| {
        let code = if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            "too-long"
        } else {
            "invalid"
        };
        FhirError::new(rejection.status(), code, rejection.body_text())
    })?;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    let media = content_type.split(';').next().unwrap_or("").trim();
    if !matches!(media, "application/fhir+json" | "application/json") {
        return Err(FhirError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "not-supported",
            "send the resource as application/fhir+json",
        ));
    }
    serde_json::from_slice(&body)
        .map_err(|e| FhirError::invalid(format!("the body is not valid JSON: {e}")))
}

/// `If-Match: W/"3"` → 3.
fn if_match(headers: &HeaderMap) -> Result<Option<i64>, FhirError> {
    let Some(value) = headers.get(header::IF_MATCH) else {
        return Ok(None);
    };
    let text = value.to_str().unwrap_or("");
    let version = text.trim().trim_start_matches("W/").trim_matches('"');
    version.parse().map(Some).map_err(|_| {
        FhirError::invalid(format!(
            "If-Match must be a version ETag like W/\"3\", got '{text}'"
        ))
    })
}

fn wants_minimal(headers: &HeaderMap) -> bool {
    headers
        .get_all("prefer")
        .iter()
        .filter_map(|h| h.to_str().ok())
        .any(|p| p.split(',').any(|part| part.trim() == "return=minimal"))
}

/// A resource response with `ETag`, `Last-Modified` and, for writes, `Location`.
fn resource_response(
    status: StatusCode,
    resource_type: &str,
    id: &str,
    body: &str,
    minimal: bool,
    location: bool,
) -> Response {
    let resource: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    let version = resource["meta"]["versionId"]
        .as_str()
        .unwrap_or("1")
        .to_string();
    let mut response = if minimal {
        status.into_response()
    } else {
        (
            status,
            [(header::CONTENT_TYPE, FHIR_JSON)],
            body.to_string(),
        )
            .into_response()
    };
    let headers = response.headers_mut();
    if let Ok(etag) = HeaderValue::from_str(&format!("W/\"{version}\"")) {
        headers.insert(header::ETAG, etag);
    }
    if let Some(modified) = resource["meta"]["lastUpdated"]
        .as_str()
        .and_then(|t| HeaderValue::from_str(t).ok())
    {
        headers.insert(header::LAST_MODIFIED, modified);
    }
    if location {
        if let Ok(loc) =
            HeaderValue::from_str(&format!("/fhir/{resource_type}/{id}/_history/{version}"))
        {
            headers.insert(header::LOCATION, loc);
        }
    }
    response
}

/// Creates a resource; the server assigns its id.
#[utoipa::path(post, path = "/fhir/{resource_type}", tag = "fhir", params(("resource_type" = String, Path), ("x-switchboard-org" = Option<String>, Header, description = "Admin keys only: the org to act for (org keys act for their own)")),
    request_body(content = Object, content_type = "application/fhir+json"),
    responses((status = 201, description = "Created"),
        (status = 400, description = "OperationOutcome: invalid resource, or an admin key without the org header"),
        (status = 404, description = "OperationOutcome: not an R4 resource type")),
    security(("bearer" = [])))]
pub async fn create(
    State(state): State<AppState>,
    Path(resource_type): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, FhirError> {
    let who = caller(&state, &headers).await?;
    check_target(&resource_type, None)?;
    let mut resource = parse_body(&headers, body)?;
    check_body(&resource_type, None, &resource)?;
    let id = uuid::Uuid::now_v7().to_string();
    if let Some(object) = resource.as_object_mut() {
        object.insert("id".into(), json!(id));
    }
    let event = service::write(
        &state.hub,
        WriteRequest {
            org_id: &who.org,
            source: Source::FhirApi,
            actor: Some(who.key_id),
            resource_type: &resource_type,
            id: &id,
            action: WriteAction::Create,
            if_match: None,
            body: Some(resource),
        },
    )
    .await?;
    Ok(resource_response(
        StatusCode::CREATED,
        &resource_type,
        &id,
        event.data.get(),
        wants_minimal(&headers),
        true,
    ))
}

/// Updates a resource, or creates it with this id.
#[utoipa::path(put, path = "/fhir/{resource_type}/{id}", tag = "fhir",
    params(("resource_type" = String, Path), ("id" = String, Path), ("If-Match" = Option<String>, Header), ("x-switchboard-org" = Option<String>, Header, description = "Admin keys only: the org to act for (org keys act for their own)")),
    request_body(content = Object, content_type = "application/fhir+json"),
    responses((status = 200, description = "Updated"), (status = 201, description = "Created"),
        (status = 400, description = "OperationOutcome: invalid id or resource, bad If-Match, or an admin key without the org header"),
        (status = 404, description = "OperationOutcome: not an R4 resource type"),
        (status = 409, description = "OperationOutcome: conflicting write"),
        (status = 412, description = "Version conflict")),
    security(("bearer" = [])))]
pub async fn update(
    State(state): State<AppState>,
    Path((resource_type, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, FhirError> {
    let who = caller(&state, &headers).await?;
    check_target(&resource_type, Some(&id))?;
    let resource = parse_body(&headers, body)?;
    check_body(&resource_type, Some(&id), &resource)?;
    let event = service::write(
        &state.hub,
        WriteRequest {
            org_id: &who.org,
            source: Source::FhirApi,
            actor: Some(who.key_id),
            resource_type: &resource_type,
            id: &id,
            action: WriteAction::Upsert,
            if_match: if_match(&headers)?,
            body: Some(resource),
        },
    )
    .await?;
    let status = if event.event_type.as_str() == "fhir.created" {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(resource_response(
        status,
        &resource_type,
        &id,
        event.data.get(),
        wants_minimal(&headers),
        true,
    ))
}

/// Deletes a resource (its history stays readable with vread).
#[utoipa::path(delete, path = "/fhir/{resource_type}/{id}", tag = "fhir",
    params(("resource_type" = String, Path), ("id" = String, Path), ("If-Match" = Option<String>, Header), ("x-switchboard-org" = Option<String>, Header, description = "Admin keys only: the org to act for (org keys act for their own)")),
    responses((status = 204, description = "Deleted"),
        (status = 400, description = "OperationOutcome: invalid id, bad If-Match, or an admin key without the org header"),
        (status = 404, description = "Unknown"), (status = 412, description = "Version conflict")), security(("bearer" = [])))]
pub async fn remove(
    State(state): State<AppState>,
    Path((resource_type, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, FhirError> {
    let who = caller(&state, &headers).await?;
    check_target(&resource_type, Some(&id))?;
    let result = service::write(
        &state.hub,
        WriteRequest {
            org_id: &who.org,
            source: Source::FhirApi,
            actor: Some(who.key_id),
            resource_type: &resource_type,
            id: &id,
            action: WriteAction::Delete,
            if_match: if_match(&headers)?,
            body: None,
        },
    )
    .await;
    match result {
        Ok(_) => Ok(StatusCode::NO_CONTENT.into_response()),
        // Deleting what is already deleted changes nothing and is not an error.
        Err(e) if e.status == StatusCode::GONE => Ok(StatusCode::NO_CONTENT.into_response()),
        Err(e) => Err(e),
    }
}

fn found(
    resource_type: &str,
    id: &str,
    stored: Option<StoredResource>,
) -> Result<Response, FhirError> {
    match stored {
        None => Err(FhirError::not_found(resource_type, id)),
        Some(r) if r.deleted => Err(FhirError::new(
            StatusCode::GONE,
            "deleted",
            format!("{resource_type}/{id} was deleted"),
        )),
        Some(r) => Ok(resource_response(
            StatusCode::OK,
            resource_type,
            id,
            &r.body,
            false,
            false,
        )),
    }
}

/// Reads the current version.
#[utoipa::path(get, path = "/fhir/{resource_type}/{id}", tag = "fhir", params(("resource_type" = String, Path), ("id" = String, Path), ("x-switchboard-org" = Option<String>, Header, description = "Admin keys only: the org to act for (org keys act for their own)")),
    responses((status = 200, description = "The resource"),
        (status = 400, description = "OperationOutcome: invalid id, or an admin key without the org header"),
        (status = 404, description = "Unknown"), (status = 410, description = "Deleted")),
    security(("bearer" = [])))]
pub async fn read(
    State(state): State<AppState>,
    Path((resource_type, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, FhirError> {
    let who = caller(&state, &headers).await?;
    check_target(&resource_type, Some(&id))?;
    let stored = state
        .store
        .read_resource(&who.org, &resource_type, &id)
        .await
        .map_err(FhirError::internal)?;
    found(&resource_type, &id, stored)
}

/// Reads one version.
#[utoipa::path(get, path = "/fhir/{resource_type}/{id}/_history/{version}", tag = "fhir",
    params(("resource_type" = String, Path), ("id" = String, Path), ("version" = String, Path), ("x-switchboard-org" = Option<String>, Header, description = "Admin keys only: the org to act for (org keys act for their own)")),
    responses((status = 200, description = "That version"),
        (status = 400, description = "OperationOutcome: invalid id or version, or an admin key without the org header"),
        (status = 404, description = "Unknown"), (status = 410, description = "A deleted version")),
    security(("bearer" = [])))]
pub async fn vread(
    State(state): State<AppState>,
    Path((resource_type, id, version)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Result<Response, FhirError> {
    let who = caller(&state, &headers).await?;
    check_target(&resource_type, Some(&id))?;
    let version: i64 = version
        .parse()
        .map_err(|_| FhirError::invalid(format!("'{version}' is not a version number")))?;
    let stored = state
        .store
        .read_resource_version(&who.org, &resource_type, &id, version)
        .await
        .map_err(FhirError::internal)?;
    found(&resource_type, &id, stored)
}

/// Searches one resource type; answers a `searchset` Bundle with paging links.
#[utoipa::path(get, path = "/fhir/{resource_type}", tag = "fhir", params(("resource_type" = String, Path), ("x-switchboard-org" = Option<String>, Header, description = "Admin keys only: the org to act for (org keys act for their own)")),
    responses((status = 200, description = "searchset Bundle"),
        (status = 400, description = "Unknown or bad parameter, or an admin key without the org header"),
        (status = 404, description = "OperationOutcome: not an R4 resource type")),
    security(("bearer" = [])))]
pub async fn search(
    State(state): State<AppState>,
    Path(resource_type): Path<String>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Result<Response, FhirError> {
    let who = caller(&state, &headers).await?;
    check_target(&resource_type, None)?;
    let raw = raw.unwrap_or_default();
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(&raw)
        .map_err(|e| FhirError::invalid(format!("bad query string: {e}")))?;
    let query = SearchQuery::parse(&resource_type, &pairs)?;
    let page = state
        .store
        .search_resources(&who.org, &resource_type, &query)
        .await
        .map_err(FhirError::internal)?;

    let base = base_url(&headers);
    let page_url = |offset: usize| {
        let mut params: Vec<(String, String)> = pairs
            .iter()
            .filter(|(k, _)| k != "_offset" && k != "_count")
            .cloned()
            .collect();
        params.push(("_count".into(), query.count.to_string()));
        params.push(("_offset".into(), offset.to_string()));
        format!(
            "{base}/{resource_type}?{}",
            serde_urlencoded::to_string(&params).unwrap_or_default()
        )
    };
    let mut links = vec![json!({"relation": "self", "url": page_url(query.offset)})];
    if query.offset + page.resources.len() < page.total {
        links.push(json!({"relation": "next", "url": page_url(query.offset + query.count)}));
    }
    if query.offset > 0 {
        links.push(json!({"relation": "previous", "url": page_url(query.offset.saturating_sub(query.count))}));
    }
    let entries: Vec<Value> = page
        .resources
        .iter()
        .filter_map(|body| serde_json::from_str::<Value>(body).ok())
        .map(|resource| {
            let full_url = format!(
                "{base}/{resource_type}/{}",
                resource["id"].as_str().unwrap_or("")
            );
            json!({"fullUrl": full_url, "resource": resource, "search": {"mode": "match"}})
        })
        .collect();
    let bundle = json!({
        "resourceType": "Bundle",
        "type": "searchset",
        "total": page.total,
        "link": links,
        "entry": entries,
    });

    // The search itself is an event: parameters and the count, never resource bodies.
    let event_type = EventType::parse("fhir.searched").map_err(FhirError::internal)?;
    let data = json!({"parameters": pairs.iter().map(|(k, v)| json!({"name": k, "value": v})).collect::<Vec<_>>(), "total": page.total});
    let event = NewEvent::with_json(event_type, who.org.as_str(), Source::FhirApi, &data)
        .map_err(FhirError::internal)?
        .resource(resource_type.as_str(), None)
        .actor(who.key_id);
    state.hub.emit(event).await.map_err(FhirError::internal)?;

    Ok(([(header::CONTENT_TYPE, FHIR_JSON)], bundle.to_string()).into_response())
}

fn base_url(headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    format!("http://{host}/fhir")
}

/// The CapabilityStatement: every R4 type supports the same interactions; search parameters are listed per type.
#[utoipa::path(get, path = "/fhir/metadata", tag = "fhir", responses((status = 200, description = "CapabilityStatement")))]
pub async fn metadata() -> Response {
    let resources: Vec<Value> = R4_RESOURCE_TYPES
        .iter()
        .map(|t| {
            let mut params = vec![
                json!({"name": "_id", "type": "token"}),
                json!({"name": "_lastUpdated", "type": "date"}),
            ];
            for p in supported_params(t) {
                let kind = match *p {
                    "identifier" => "token",
                    "birthdate" => "date",
                    "subject" | "patient" => "reference",
                    _ => "string",
                };
                params.push(json!({"name": p, "type": kind}));
            }
            let interactions: Vec<Value> =
                ["read", "vread", "update", "delete", "create", "search-type"]
                    .iter()
                    .map(|code| json!({"code": code}))
                    .collect();
            json!({
                "type": t,
                "versioning": "versioned",
                "readHistory": true,
                "updateCreate": true,
                "conditionalCreate": false,
                "conditionalUpdate": false,
                "conditionalDelete": "not-supported",
                "interaction": interactions,
                "searchParam": params,
            })
        })
        .collect();
    let statement = json!({
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": crate::event::Timestamp::now().to_rfc3339(),
        "kind": "instance",
        "software": {"name": "Switchboard", "version": env!("CARGO_PKG_VERSION")},
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json", "json"],
        "rest": [{
            "mode": "server",
            "security": {"description": "Authorization: Bearer <API key>; an admin key names the org in X-Switchboard-Org"},
            "resource": resources,
        }],
    });
    ([(header::CONTENT_TYPE, FHIR_JSON)], statement.to_string()).into_response()
}
