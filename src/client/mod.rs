//! HTTP client for the orchestrator's API (docs/contract.md §5), used by the drone, the CLI, the
//! gateway and the tests; http or https. Must run inside an actix system (awc is
//! single-threaded).

pub mod gateway;

use crate::wire::orchestrator::*;
use awc::http::StatusCode;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::time::Duration;

/// Largest response body the client accepts (package listings of 100,000 packages fit).
const BODY_LIMIT: usize = 256 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach {url}: {message}")]
    Unreachable { url: String, message: String },
    #[error("{url}: the token was refused (HTTP 401); check the token")]
    Unauthorized { url: String },
    #[error("{url}: HTTP {status}: {message}")]
    Status {
        url: String,
        status: u16,
        message: String,
    },
    #[error("{url}: unexpected answer: {message}")]
    Decode { url: String, message: String },
}

impl ClientError {
    /// The orchestrator could not be reached at all (worth retrying later).
    pub fn is_unreachable(&self) -> bool {
        matches!(self, ClientError::Unreachable { .. })
            || matches!(self, ClientError::Status { status, .. } if *status == 503)
    }
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Status { status, .. } => Some(*status),
            ClientError::Unauthorized { .. } => Some(401),
            _ => None,
        }
    }
}

#[derive(Clone)]
pub struct ApiClient {
    base: String,
    token: Option<String>,
    http: awc::Client,
    /// Why an https `base` cannot be reached (no trusted certificates): every request
    /// fails with it.
    tls_problem: Option<std::sync::Arc<crate::sys::tls::TlsError>>,
}

impl ApiClient {
    pub fn new(base: &str, token: Option<String>) -> Self {
        Self::with_timeout(base, token, Duration::from_secs(30))
    }

    /// `base` is `http://…` or `https://…` (trusting the system's store, see
    /// [`crate::sys::tls`]).
    pub fn with_timeout(base: &str, token: Option<String>, timeout: Duration) -> Self {
        let mut connector = awc::Connector::new().timeout(Duration::from_secs(5));
        let mut tls_problem = None;
        if crate::sys::tls::is_https(base) {
            match crate::sys::tls::system_client_config() {
                Ok(config) => connector = connector.rustls_0_23(config),
                Err(e) => tls_problem = Some(e),
            }
        }
        // The API never redirects; a proxy that does (http → https) is named in the error
        // rather than followed.
        let http = awc::Client::builder()
            .timeout(timeout)
            .disable_redirects()
            .connector(connector)
            .finish();
        ApiClient {
            base: base.trim_end_matches('/').to_string(),
            token,
            http,
            tls_problem,
        }
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    fn request(&self, method: awc::http::Method, url: &str) -> awc::ClientRequest {
        let mut r = self.http.request(method, url);
        if let Some(t) = &self.token {
            r = r.bearer_auth(t);
        }
        r
    }

    async fn finish<T: DeserializeOwned>(
        url: String,
        res: Result<
            awc::ClientResponse<
                impl futures_util::Stream<
                        Item = Result<actix_web::web::Bytes, awc::error::PayloadError>,
                    > + Unpin,
            >,
            awc::error::SendRequestError,
        >,
    ) -> Result<Option<T>, ClientError> {
        let mut resp = res.map_err(|e| ClientError::Unreachable {
            url: url.clone(),
            message: e.to_string(),
        })?;
        let status = resp.status();
        if status.is_redirection() {
            let to = resp
                .headers()
                .get("location")
                .and_then(|l| l.to_str().ok())
                .unwrap_or("elsewhere")
                .to_string();
            return Err(ClientError::Status {
                url,
                status: status.as_u16(),
                message: format!("redirected to {to}; configure that URL instead"),
            });
        }
        let body = resp
            .body()
            .limit(BODY_LIMIT)
            .await
            .map_err(|e| ClientError::Unreachable {
                url: url.clone(),
                message: format!("reading the answer: {e}"),
            })?;
        if status == StatusCode::NO_CONTENT {
            return Ok(None);
        }
        if status == StatusCode::UNAUTHORIZED {
            return Err(ClientError::Unauthorized { url });
        }
        if !status.is_success() {
            let message = serde_json::from_slice::<ErrorBody>(&body)
                .map(|e| e.error)
                .unwrap_or_else(|_| {
                    String::from_utf8_lossy(&body)
                        .trim()
                        .chars()
                        .take(500)
                        .collect()
                });
            return Err(ClientError::Status {
                url,
                status: status.as_u16(),
                message,
            });
        }
        serde_json::from_slice(&body)
            .map(Some)
            .map_err(|e| ClientError::Decode {
                url,
                message: e.to_string(),
            })
    }

    /// The https client cannot work here at all.
    fn check_tls(&self, url: &str) -> Result<(), ClientError> {
        match &self.tls_problem {
            Some(e) => Err(ClientError::Unreachable {
                url: url.to_string(),
                message: e.to_string(),
            }),
            None => Ok(()),
        }
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        let url = self.url(path);
        self.check_tls(&url)?;
        let res = self.request(awc::http::Method::GET, &url).send().await;
        Self::finish(url.clone(), res)
            .await?
            .ok_or(ClientError::Decode {
                url,
                message: "empty answer".into(),
            })
    }

    /// POST with a JSON body; `None` for 204 No Content.
    pub async fn post_opt<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<Option<T>, ClientError> {
        let url = self.url(path);
        self.check_tls(&url)?;
        let res = self
            .request(awc::http::Method::POST, &url)
            .send_json(body)
            .await;
        Self::finish(url, res).await
    }

    pub async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        let url = self.url(path);
        self.post_opt(path, body).await?.ok_or(ClientError::Decode {
            url,
            message: "empty answer".into(),
        })
    }

    pub async fn healthz(&self) -> Result<Health, ClientError> {
        self.get("/healthz").await
    }
    pub async fn status(&self) -> Result<Status, ClientError> {
        self.get("/api/v1/status").await
    }
    pub async fn packages(&self, state: Option<&str>) -> Result<PackageList, ClientError> {
        match state {
            Some(s) => self.get(&format!("/api/v1/packages?state={s}")).await,
            None => self.get("/api/v1/packages").await,
        }
    }
    /// Sends a package set as it is (plain, portage output or JSON).
    pub async fn submit(&self, body: Vec<u8>) -> Result<SubmitResult, ClientError> {
        self.submit_with_priority(body, 0).await
    }
    /// A set with an operator priority (higher sets go first).
    pub async fn submit_with_priority(
        &self,
        body: Vec<u8>,
        priority: i32,
    ) -> Result<SubmitResult, ClientError> {
        let url = if priority == 0 {
            self.url("/api/v1/packages")
        } else {
            self.url(&format!("/api/v1/packages?priority={priority}"))
        };
        self.check_tls(&url)?;
        let res = self
            .request(awc::http::Method::POST, &url)
            .insert_header(("content-type", "text/plain"))
            .send_body(body)
            .await;
        Self::finish(url.clone(), res)
            .await?
            .ok_or(ClientError::Decode {
                url,
                message: "empty answer".into(),
            })
    }
    pub async fn retry(&self, req: &RetryRequest) -> Result<RetryResult, ClientError> {
        self.post("/api/v1/packages/retry", req).await
    }
    pub async fn package_log(&self, atom: &str) -> Result<PackageLog, ClientError> {
        self.get(&format!("/api/v1/packages/{atom}/log")).await
    }
    pub async fn drones(&self) -> Result<DroneList, ClientError> {
        self.get("/api/v1/drones").await
    }
    pub async fn drone(&self, name: &str) -> Result<DroneInfo, ClientError> {
        self.get(&format!("/api/v1/drones/{name}")).await
    }
    pub async fn drone_queue(&self, name: &str) -> Result<DroneQueue, ClientError> {
        self.get(&format!("/api/v1/drones/{name}/queue")).await
    }
    pub async fn drone_logs(&self, name: &str, n: usize) -> Result<DroneLogs, ClientError> {
        self.get(&format!("/api/v1/drones/{name}/logs?n={n}")).await
    }
    pub async fn control(
        &self,
        name: &str,
        action: ControlAction,
    ) -> Result<ControlResult, ClientError> {
        self.post(
            &format!("/api/v1/drones/{name}/control"),
            &ControlRequest { action },
        )
        .await
    }
    pub async fn register(&self, req: &RegisterRequest) -> Result<RegisterResponse, ClientError> {
        self.post("/api/v1/drones/register", req).await
    }
    pub async fn heartbeat(
        &self,
        name: &str,
        req: &HeartbeatRequest,
    ) -> Result<HeartbeatResponse, ClientError> {
        self.post(&format!("/api/v1/drones/{name}/heartbeat"), req)
            .await
    }
    /// `None` when there is no work for this drone now (204).
    pub async fn claim(&self, drone: &str) -> Result<Option<WorkAssignment>, ClientError> {
        self.post_opt(
            "/api/v1/work/claim",
            &ClaimRequest {
                drone: drone.to_string(),
            },
        )
        .await
    }
    pub async fn uploading(&self, lease: LeaseId, epoch: u64) -> Result<Ack, ClientError> {
        self.post(
            &format!("/api/v1/work/{lease}/uploading"),
            &EpochBody { epoch },
        )
        .await
    }
    pub async fn complete(
        &self,
        lease: LeaseId,
        req: &CompleteRequest,
    ) -> Result<CompleteResponse, ClientError> {
        self.post(&format!("/api/v1/work/{lease}/complete"), req)
            .await
    }
    pub async fn fail(&self, lease: LeaseId, req: &FailRequest) -> Result<Ack, ClientError> {
        self.post(&format!("/api/v1/work/{lease}/fail"), req).await
    }
    /// The timeline of the last two hours.
    pub async fn timeline(&self) -> Result<crate::wire::orchestrator::Timeline, ClientError> {
        self.get("/api/v1/timeline").await
    }
    /// The next lines of a running build's output (drone).
    pub async fn output(
        &self,
        lease: LeaseId,
        chunk: &crate::wire::orchestrator::OutputChunk,
    ) -> Result<crate::wire::orchestrator::OutputAck, ClientError> {
        self.post(&format!("/api/v1/work/{lease}/output"), chunk)
            .await
    }
    /// A package's live build output after line `after` (None: the kept tail), waiting up
    /// to `wait_s` for more; `atom` as `category/pf`.
    pub async fn live_log(
        &self,
        atom: &str,
        after: Option<u64>,
        wait_s: u64,
    ) -> Result<crate::wire::orchestrator::LiveLog, ClientError> {
        let after = after.map(|a| format!("&after={a}")).unwrap_or_default();
        self.get(&format!(
            "/api/v1/packages/{atom}/log/live?wait={wait_s}{after}"
        ))
        .await
    }
    /// A new token of the drone's own (admin); `name` as a path segment.
    pub async fn enroll(
        &self,
        name: &str,
        host: Option<&str>,
        token: Option<&str>,
    ) -> Result<Enrollment, ClientError> {
        let req = EnrollRequest {
            host: host.map(str::to_string),
            token: token.map(str::to_string),
        };
        self.post(&format!("/api/v1/drones/{name}/enroll"), &req)
            .await
    }
    pub async fn revoke(&self, name: &str, forget: bool) -> Result<Revoked, ClientError> {
        self.post(
            &format!("/api/v1/drones/{name}/revoke"),
            &RevokeRequest { forget },
        )
        .await
    }
    pub async fn verify_binhost(&self, fix: bool) -> Result<BinhostReport, ClientError> {
        self.post("/api/v1/binhost/verify", &BinhostVerifyRequest { fix })
            .await
    }
    pub async fn bump(&self, atom: &str) -> Result<BumpResult, ClientError> {
        let req = BumpRequest {
            atom: atom.to_string(),
        };
        self.post("/api/v1/packages/bump", &req).await
    }
    pub async fn releases(&self) -> Result<ReleaseList, ClientError> {
        self.get("/api/v1/binhost/releases").await
    }
    pub async fn snapshot(&self, name: Option<&str>) -> Result<SnapshotInfo, ClientError> {
        let req = SnapshotRequest {
            name: name.map(String::from),
        };
        self.post("/api/v1/binhost/snapshots", &req).await
    }
    pub async fn tag(&self, channel: &str, snapshot: &str) -> Result<ChannelInfo, ClientError> {
        let req = TagRequest {
            snapshot: snapshot.to_string(),
        };
        self.post(
            &format!("/api/v1/binhost/channels/{}/tag", path_segment(channel)),
            &req,
        )
        .await
    }
    pub async fn rollback(&self, channel: &str) -> Result<ChannelInfo, ClientError> {
        let path = format!(
            "/api/v1/binhost/channels/{}/rollback",
            path_segment(channel)
        );
        self.post(&path, &serde_json::json!({})).await
    }
    pub async fn diff(&self, from: &str, to: &str) -> Result<DiffReport, ClientError> {
        self.get(&format!(
            "/api/v1/binhost/diff?from={}&to={}",
            path_segment(from),
            path_segment(to)
        ))
        .await
    }
    pub async fn gc(&self, dry_run: bool) -> Result<GcReport, ClientError> {
        self.post("/api/v1/binhost/gc", &GcRequest { dry_run })
            .await
    }
    pub async fn enrollments(&self) -> Result<EnrollmentList, ClientError> {
        self.get("/api/v1/enrollments").await
    }
}

/// `s` percent-encoded for a path segment or query value (every byte but letters,
/// digits and `-_~`; `.` too, so `..` stays a name), so a name with `/` or `..` reaches
/// the server, which names the problem, instead of changing the route.
fn path_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
