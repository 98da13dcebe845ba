//! The HTTP transport: JSON bodies, gzip both ways, the protocol header, bearer tokens, and
//! limits on what it reads back (before and after inflating).

use super::{Transport, TransportError, WireBytes};
use crate::protocol::{
    EnrolRequest, EnrolResponse, ErrorBody, PROTOCOL_HEADER, PROTOCOL_VERSION, RotateResponse,
    SyncRequest, SyncResponse, limits,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::io::{Read, Write};
use std::time::Duration;

/// Talks to one server over HTTP(S).
pub struct HttpTransport {
    base: String,
    client: reqwest::blocking::Client,
}

impl HttpTransport {
    /// A transport for `base_url` (e.g. `https://feltbog.kommune.dk`).
    pub fn new(base_url: &str) -> Result<HttpTransport, TransportError> {
        // TLS through rustls with ring; installing twice is harmless.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::blocking::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| TransportError::Unreachable(e.to_string()))?;
        Ok(HttpTransport {
            base: base_url.trim_end_matches('/').to_owned(),
            client,
        })
    }

    fn post<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        path: &str,
        token: Option<&str>,
        body: &Req,
    ) -> Result<(Resp, WireBytes), TransportError> {
        let json = serde_json::to_vec(body).map_err(|e| TransportError::Decode(e.to_string()))?;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&json)
            .map_err(|e| TransportError::Decode(e.to_string()))?;
        let compressed = gz
            .finish()
            .map_err(|e| TransportError::Decode(e.to_string()))?;
        let sent = compressed.len() as u64;
        let mut request = self
            .client
            .post(format!("{}{path}", self.base))
            .header(PROTOCOL_HEADER, PROTOCOL_VERSION.to_string())
            .header("content-type", "application/json")
            .header("content-encoding", "gzip")
            .header("accept-encoding", "gzip")
            .body(compressed);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        // Errors are described without the URL's query or any body: no token leaks into logs.
        let response = request
            .send()
            .map_err(|e| TransportError::Unreachable(describe(&e)))?;
        let status = response.status();
        let gzip = response
            .headers()
            .get("content-encoding")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("gzip"));
        // An answer is bounded by the server's page budget; a page of changes that do not
        // compress can pass the request limit on the wire, so answers get the inflated limit.
        let mut raw = Vec::new();
        response
            .take(limits::MAX_INFLATED_BYTES as u64 + 1)
            .read_to_end(&mut raw)
            .map_err(|e| TransportError::Unreachable(e.to_string()))?;
        if raw.len() > limits::MAX_INFLATED_BYTES {
            return Err(TransportError::Decode("answer too large".into()));
        }
        let received = raw.len() as u64;
        let body = if gzip {
            let mut inflated = Vec::new();
            flate2::read::GzDecoder::new(&raw[..])
                .take(limits::MAX_INFLATED_BYTES as u64 + 1)
                .read_to_end(&mut inflated)
                .map_err(|e| TransportError::Decode(e.to_string()))?;
            if inflated.len() > limits::MAX_INFLATED_BYTES {
                return Err(TransportError::Decode(
                    "answer too large after decompression".into(),
                ));
            }
            inflated
        } else {
            raw
        };
        if !status.is_success() {
            let error: Option<ErrorBody> = serde_json::from_slice(&body).ok();
            return Err(TransportError::Refused {
                status: status.as_u16(),
                code: error.as_ref().map(|e| e.code),
                wipe: error.as_ref().is_some_and(|e| e.wipe),
                retry_after_ms: error.as_ref().and_then(|e| e.retry_after_ms),
                message: error
                    .map(|e| e.message)
                    .unwrap_or_else(|| status.to_string()),
            });
        }
        // serde's message can quote the answer (personal data): keep only its kind and place.
        let parsed = serde_json::from_slice(&body).map_err(|e| {
            TransportError::Decode(format!(
                "{:?} error at line {} column {}",
                e.classify(),
                e.line(),
                e.column()
            ))
        })?;
        Ok((parsed, WireBytes { sent, received }))
    }
}

fn describe(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timed out".into()
    } else if e.is_connect() {
        "connection failed".into()
    } else {
        "request failed".into()
    }
}

impl Transport for HttpTransport {
    fn enrol(&self, request: &EnrolRequest) -> Result<EnrolResponse, TransportError> {
        self.post("/v1/enrol", None, request).map(|(r, _)| r)
    }

    fn sync(
        &self,
        token: &str,
        request: &SyncRequest,
    ) -> Result<(SyncResponse, WireBytes), TransportError> {
        self.post("/v1/sync", Some(token), request)
    }

    fn standing(&self, standing_token: &str) -> Result<(), TransportError> {
        let (answer, _): (crate::protocol::StandingAnswer, _) = self.post(
            crate::protocol::STANDING_PATH,
            Some(standing_token),
            &serde_json::json!({}),
        )?;
        if answer.active {
            Ok(())
        } else {
            Err(TransportError::Decode(
                "a standing answer that is not active".into(),
            ))
        }
    }

    fn rotate(&self, token: &str) -> Result<RotateResponse, TransportError> {
        self.post("/v1/token/rotate", Some(token), &serde_json::json!({}))
            .map(|(r, _)| r)
    }
}
