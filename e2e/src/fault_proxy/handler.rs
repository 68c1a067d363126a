//! Handling of one request: record it, apply the fault rules, forward the rest to moto.

use std::collections::BTreeSet;
use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, HeaderMap, HeaderValue};
use hyper::http::request::Parts;
use hyper::{Request, Response, StatusCode};

use super::{Call, Outcome, Shared, lock, query};

/// Signing name of the service a request is for, from SigV4's credential scope
/// (`Credential=AKID/20250101/us-east-1/ec2/aws4_request`).
fn service_of(headers: &HeaderMap) -> String {
    headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|auth| auth.split("Credential=").nth(1))
        .and_then(|scope| scope.split(['/', ',']).nth(3))
        .unwrap_or("unknown")
        .to_owned()
}

fn action_of(req: &Parts, form: &[query::Pair]) -> String {
    if let Some(target) = req
        .headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
    {
        return target.rsplit('.').next().unwrap_or(target).to_owned();
    }
    let from_uri = || {
        let q = query::parse_form(req.uri.query().unwrap_or_default().as_bytes());
        query::get(&q, "Action").map(str::to_owned)
    };
    query::get(form, "Action")
        .map(str::to_owned)
        .or_else(from_uri)
        .unwrap_or_else(|| format!("{} {}", req.method, req.uri.path()))
}

fn respond(status: u16, content_type: &str, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
    if let Ok(v) = HeaderValue::from_str(content_type) {
        response.headers_mut().insert(CONTENT_TYPE, v);
    }
    response
}

fn throttled(req: &Parts) -> Response<Full<Bytes>> {
    match req
        .headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
    {
        // JSON protocols: SQS models `RequestThrottled`, most others `ThrottlingException`.
        Some(target) => {
            let code = if target.starts_with("AmazonSQS.") {
                "com.amazonaws.sqs#RequestThrottled"
            } else {
                "ThrottlingException"
            };
            let body = format!(r#"{{"__type":"{code}","message":"Rate exceeded"}}"#);
            respond(400, "application/x-amz-json-1.0", body)
        }
        None => respond(
            503,
            "text/xml;charset=UTF-8",
            query::ec2_error_xml("RequestLimitExceeded", "Request limit exceeded."),
        ),
    }
}

/// Serves one request: decides its fate, records it, holds it if a delay rule says so.
pub(super) async fn handle(
    shared: Arc<Shared>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = req.into_parts();
    let body = match body.collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            return Ok(respond(
                400,
                "text/plain",
                format!("reading the request: {e}"),
            ));
        }
    };
    let is_form = parts
        .headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/x-www-form-urlencoded"));
    let form = if is_form {
        query::parse_form(&body)
    } else {
        Vec::new()
    };
    let action = action_of(&parts, &form);
    let (response, outcome) = decide(&shared, &parts, body, &form, &action).await;
    let delay = lock(&shared.rules).delay.get(&action).copied();
    // Recorded before the delay: a client that gives up waiting still sees its call counted.
    let call = Call {
        service: service_of(&parts.headers),
        action,
        outcome,
    };
    lock(&shared.calls).push(call);
    if let Some(delay) = delay {
        tokio::time::sleep(delay).await;
    }
    Ok(response)
}

/// Applies the rules to one request: throttle, ICE, or forward.
async fn decide(
    shared: &Shared,
    parts: &Parts,
    body: Bytes,
    form: &[query::Pair],
    action: &str,
) -> (Response<Full<Bytes>>, Outcome) {
    let throttle = {
        let mut rules = lock(&shared.rules);
        match rules.throttle.get_mut(action) {
            Some(left) if *left > 0 => {
                *left -= 1;
                true
            }
            _ => false,
        }
    };
    if throttle {
        return (throttled(parts), Outcome::Throttled);
    }
    let ice = lock(&shared.rules).ice.clone();
    if ice.is_empty() {
        return forward(shared, parts, body, None, 0).await;
    }
    let is_iced = |instance_type: Option<&str>, zone: Option<&str>| match (instance_type, zone) {
        (Some(t), Some(z)) => ice.contains(&(t.to_owned(), z.to_owned())),
        _ => false, // type from the launch template or zone left to EC2: not matched
    };
    match action {
        "RunInstances" => {
            let subnet =
                query::get(form, "SubnetId").or(query::get(form, "NetworkInterface.1.SubnetId"));
            let zone = match query::get(form, "Placement.AvailabilityZone") {
                Some(z) => Some(z.to_owned()),
                None => zone_of_subnet(shared, parts, subnet).await,
            };
            let instance_type = query::get(form, "InstanceType");
            if is_iced(instance_type, zone.as_deref()) {
                let message = query::ice_message(
                    instance_type.unwrap_or_default(),
                    &zone.unwrap_or_default(),
                );
                let xml = query::ec2_error_xml("InsufficientInstanceCapacity", &message);
                return (
                    respond(500, "text/xml;charset=UTF-8", xml),
                    Outcome::InsufficientCapacity,
                );
            }
            forward(shared, parts, body, None, 0).await
        }
        "CreateFleet" => {
            let mut removed = BTreeSet::new();
            let mut items = String::new();
            for o in query::fleet_overrides(form) {
                let zone = match o.field("AvailabilityZone") {
                    Some(z) => Some(z.to_owned()),
                    None => zone_of_subnet(shared, parts, o.field("SubnetId")).await,
                };
                if is_iced(o.field("InstanceType"), zone.as_deref()) {
                    items += &query::fleet_ice_item(form, &o, zone.as_deref().unwrap_or_default());
                    removed.insert((o.config, o.index));
                }
            }
            if removed.is_empty() {
                return forward(shared, parts, body, None, 0).await;
            }
            match query::remove_overrides(form, &removed) {
                Some(rest) => {
                    let body = Bytes::from(query::encode_form(&rest));
                    forward(shared, parts, body, Some(&items), removed.len()).await
                }
                None => (
                    respond(
                        200,
                        "text/xml;charset=UTF-8",
                        query::empty_fleet_response(&items),
                    ),
                    Outcome::InsufficientCapacity,
                ),
            }
        }
        _ => forward(shared, parts, body, None, 0).await,
    }
}

/// Sends the request to moto; `fleet_errors` are added to a successful CreateFleet response.
async fn forward(
    shared: &Shared,
    parts: &Parts,
    body: Bytes,
    fleet_errors: Option<&str>,
    iced: usize,
) -> (Response<Full<Bytes>>, Outcome) {
    let uri = match parts.uri.path_and_query() {
        Some(pq) => format!(
            "{}{}",
            shared.upstream.to_string().trim_end_matches('/'),
            pq
        ),
        None => shared.upstream.to_string(),
    };
    let mut request = Request::new(Full::new(body));
    *request.method_mut() = parts.method.clone();
    *request.uri_mut() = uri.parse().expect("upstream URI with a valid path");
    *request.headers_mut() = parts.headers.clone();
    // The body may have been rewritten; hyper sets the length of the new one.
    request.headers_mut().remove(CONTENT_LENGTH);
    let answer = async {
        let response = shared
            .client
            .request(request)
            .await
            .map_err(|e| e.to_string())?;
        let (parts, body) = response.into_parts();
        let body = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
        Ok::<_, String>((parts, body))
    };
    let (mut upstream, body) = match answer.await {
        Ok(answer) => answer,
        Err(e) => {
            let message = format!("fault proxy: moto unreachable: {e}");
            return (
                respond(502, "text/plain", message.clone()),
                Outcome::UpstreamFailed(message),
            );
        }
    };
    let status = upstream.status.as_u16();
    let body = match fleet_errors {
        Some(items) if upstream.status.is_success() => Bytes::from(query::add_fleet_errors(
            &String::from_utf8_lossy(&body),
            items,
        )),
        _ => body,
    };
    for hop in [
        CONTENT_LENGTH,
        hyper::header::TRANSFER_ENCODING,
        hyper::header::CONNECTION,
    ] {
        upstream.headers.remove(hop);
    }
    let response = Response::from_parts(upstream, Full::new(body));
    (response, Outcome::Forwarded { status, iced })
}

/// The zone of `subnet`, asked of moto once (with the caller's credentials) and cached.
async fn zone_of_subnet(shared: &Shared, parts: &Parts, subnet: Option<&str>) -> Option<String> {
    let subnet = subnet?;
    if let Some(zone) = lock(&shared.zones).get(subnet) {
        return Some(zone.clone());
    }
    let body = query::encode_form(&[
        ("Action".into(), "DescribeSubnets".into()),
        ("Version".into(), "2016-11-15".into()),
        ("SubnetId.1".into(), subnet.to_owned()),
    ]);
    let mut request = Request::new(Full::new(Bytes::from(body)));
    *request.method_mut() = hyper::Method::POST;
    *request.uri_mut() = shared.upstream.clone();
    let headers = request.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/x-www-form-urlencoded"),
    );
    // moto routes by the credential scope and does not check signatures.
    if let Some(auth) = parts.headers.get(AUTHORIZATION) {
        headers.insert(AUTHORIZATION, auth.clone());
    }
    let lookup = async {
        let response = shared.client.request(request).await.ok()?;
        let body = response.into_body().collect().await.ok()?.to_bytes();
        query::first_tag(&String::from_utf8_lossy(&body), "availabilityZone").map(str::to_owned)
    };
    match lookup.await {
        Some(zone) => {
            lock(&shared.zones).insert(subnet.to_owned(), zone.clone());
            Some(zone)
        }
        None => {
            tracing::warn!("fault proxy: zone of {subnet} unknown; ICE rules cannot match it");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_comes_from_the_credential_scope() {
        let mut headers = HeaderMap::new();
        assert_eq!(service_of(&headers), "unknown");
        headers.insert(
            AUTHORIZATION,
            HeaderValue::from_static(
                "AWS4-HMAC-SHA256 Credential=test/20250101/us-east-1/sqs/aws4_request, SignedHeaders=host, Signature=0",
            ),
        );
        assert_eq!(service_of(&headers), "sqs");
    }

    #[test]
    fn action_from_target_form_or_path() {
        let req = |target: Option<&str>, uri: &str| {
            let mut b = Request::builder().uri(uri);
            if let Some(t) = target {
                b = b.header("x-amz-target", t);
            }
            b.body(()).unwrap().into_parts().0
        };
        let form = vec![("Action".to_owned(), "CreateFleet".to_owned())];
        assert_eq!(
            action_of(&req(Some("AmazonSQS.ReceiveMessage"), "/"), &[]),
            "ReceiveMessage"
        );
        assert_eq!(action_of(&req(None, "/"), &form), "CreateFleet");
        assert_eq!(
            action_of(&req(None, "/?Action=DescribeVpcs&Version=1"), &[]),
            "DescribeVpcs"
        );
        assert_eq!(
            action_of(&req(None, "/moto-api/reset"), &[]),
            "GET /moto-api/reset"
        );
    }
}
