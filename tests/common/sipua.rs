//! A minimal SIP UAC over UDP, written by hand so a test can send what no client would
//! (and run thousands of call cycles without a client process per call).

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::UdpSocket;

/// A SIP user agent client on one UDP socket.
pub struct Uac {
    pub socket: UdpSocket,
    pub server: SocketAddr,
    /// Header lines (each ending `\r\n`) added to every request, e.g. `Authorization`.
    pub extra_headers: String,
    n: u64,
}

/// A response, as text, with its status.
#[derive(Debug, Clone)]
pub struct SipResponse {
    pub status: u16,
    pub text: String,
}

impl SipResponse {
    /// The first header `name` (case-insensitive), value trimmed.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.text.lines().find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    /// The body.
    pub fn body(&self) -> &str {
        self.text.split_once("\r\n\r\n").map_or("", |(_, b)| b)
    }
}

/// An established call (after the ACK).
pub struct Dialog {
    pub call_id: String,
    pub from_tag: String,
    pub to: String,
    pub target: String,
    pub cseq: u32,
    pub answer: String,
}

impl Uac {
    /// A UAC bound to `bind` (e.g. `127.0.0.1:0`), talking to `server`.
    pub async fn new(bind: &str, server: SocketAddr) -> Uac {
        Uac {
            socket: UdpSocket::bind(bind).await.unwrap(),
            server,
            extra_headers: String::new(),
            n: 0,
        }
    }

    pub fn local(&self) -> SocketAddr {
        self.socket.local_addr().unwrap()
    }

    fn next(&mut self) -> u64 {
        self.n += 1;
        self.n
    }

    /// Sends raw bytes.
    pub async fn send_raw(&self, bytes: &[u8]) {
        self.socket.send_to(bytes, self.server).await.unwrap();
    }

    /// The next response within `patience` (requests the server sends are skipped).
    pub async fn response(&self, patience: Duration) -> Option<SipResponse> {
        let deadline = tokio::time::Instant::now() + patience;
        let mut buf = vec![0u8; 65_536];
        loop {
            let (n, _) = tokio::time::timeout_at(deadline, self.socket.recv_from(&mut buf))
                .await
                .ok()?
                .ok()?;
            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
            if let Some(rest) = text.strip_prefix("SIP/2.0 ") {
                let status = rest.get(..3).and_then(|s| s.parse().ok()).unwrap_or(0);
                return Some(SipResponse { status, text });
            }
        }
    }

    /// The next request the server sends within `patience` (its first line and headers).
    pub async fn server_request(&self, patience: Duration) -> Option<String> {
        let deadline = tokio::time::Instant::now() + patience;
        let mut buf = vec![0u8; 65_536];
        loop {
            let (n, _) = tokio::time::timeout_at(deadline, self.socket.recv_from(&mut buf))
                .await
                .ok()?
                .ok()?;
            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
            if !text.starts_with("SIP/2.0 ") {
                return Some(text);
            }
        }
    }

    /// A final response (1xx skipped).
    pub async fn final_response(&self, patience: Duration) -> Option<SipResponse> {
        loop {
            let r = self.response(patience).await?;
            if r.status >= 200 {
                return Some(r);
            }
        }
    }

    // The fields of a SIP request, in the order the message has them.
    #[allow(clippy::too_many_arguments)]
    fn request(
        &mut self,
        method: &str,
        uri: &str,
        call_id: &str,
        from_tag: &str,
        to: &str,
        cseq: u32,
        cseq_method: &str,
        body: &str,
    ) -> String {
        let branch = format!("z9hG4bK{}x{}", std::process::id(), self.next());
        let local = self.local();
        let content = if body.is_empty() {
            String::new()
        } else {
            "Content-Type: application/sdp\r\n".into()
        };
        format!(
            "{method} {uri} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch={branch};rport\r\n\
             Max-Forwards: 70\r\nFrom: \"Tester\" <sip:tester@{local}>;tag={from_tag}\r\nTo: {to}\r\n\
             Call-ID: {call_id}\r\nCSeq: {cseq} {cseq_method}\r\nContact: <sip:tester@{local}>\r\n\
             {extra}{content}Content-Length: {}\r\n\r\n{body}",
            body.len(),
            extra = self.extra_headers
        )
    }

    /// An INVITE to `user` with `sdp` (empty: offerless); the final response.
    pub async fn invite(&mut self, user: &str, call_id: &str, sdp: &str) -> (SipResponse, String) {
        let from_tag = format!("ft{}", self.next());
        let uri = format!("sip:{user}@{}", self.server);
        let to = format!("<{uri}>");
        let invite = self.request("INVITE", &uri, call_id, &from_tag, &to, 1, "INVITE", sdp);
        self.send_raw(invite.as_bytes()).await;
        let r = self.final_response(Duration::from_secs(5)).await.expect("no final response");
        if r.status >= 300 {
            let to = r.header("To").unwrap_or_default().to_owned();
            let mut ack = self.request("ACK", &uri, call_id, &from_tag, &to, 1, "ACK", "");
            if let (Some(ours), Some(invite)) = (branch(&ack), branch(&invite)) {
                ack = ack.replacen(&ours, &invite, 1);
            }
            self.send_raw(ack.as_bytes()).await;
        }
        (r, from_tag)
    }

    /// INVITE, 200, ACK: an established call. An offerless INVITE (`sdp` empty) sends
    /// `ack_sdp` as the answer in the ACK.
    pub async fn call(
        &mut self,
        user: &str,
        call_id: &str,
        sdp: &str,
    ) -> Result<Dialog, SipResponse> {
        self.call_with_ack(user, call_id, sdp, "").await
    }

    /// [`Self::call`] with a body in the ACK.
    pub async fn call_with_ack(
        &mut self,
        user: &str,
        call_id: &str,
        sdp: &str,
        ack_sdp: &str,
    ) -> Result<Dialog, SipResponse> {
        let (ok, from_tag) = self.invite(user, call_id, sdp).await;
        if ok.status != 200 {
            return Err(ok);
        }
        let to = ok.header("To").unwrap_or_default().to_owned();
        let target = ok
            .header("Contact")
            .and_then(|c| c.split('<').nth(1))
            .and_then(|c| c.split('>').next())
            .unwrap_or_default()
            .to_owned();
        let mut dialog = Dialog {
            call_id: call_id.into(),
            from_tag,
            to,
            target,
            cseq: 1,
            answer: ok.body().into(),
        };
        let ack = self.request(
            "ACK",
            &dialog.target,
            call_id,
            &dialog.from_tag,
            &dialog.to,
            1,
            "ACK",
            ack_sdp,
        );
        self.send_raw(ack.as_bytes()).await;
        dialog.cseq = 2;
        Ok(dialog)
    }

    /// A request in the dialog (`BYE`, `INFO`, …); its final response.
    pub async fn in_dialog(
        &mut self,
        dialog: &mut Dialog,
        method: &str,
        body: &str,
        content_type: &str,
    ) -> Option<SipResponse> {
        let mut req = self.request(
            method,
            &dialog.target.clone(),
            &dialog.call_id.clone(),
            &dialog.from_tag.clone(),
            &dialog.to.clone(),
            dialog.cseq,
            method,
            "",
        );
        dialog.cseq += 1;
        if !body.is_empty() {
            req = req.replace(
                "Content-Length: 0\r\n\r\n",
                &format!(
                    "Content-Type: {content_type}\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                ),
            );
        }
        self.send_raw(req.as_bytes()).await;
        self.final_response(Duration::from_secs(5)).await
    }

    /// A re-INVITE with `sdp` in the dialog, ACKed; its final response.
    pub async fn reinvite(&mut self, dialog: &mut Dialog, sdp: &str) -> Option<SipResponse> {
        let cseq = dialog.cseq;
        let (target, call_id, from_tag, to) = (
            dialog.target.clone(),
            dialog.call_id.clone(),
            dialog.from_tag.clone(),
            dialog.to.clone(),
        );
        let invite = self.request("INVITE", &target, &call_id, &from_tag, &to, cseq, "INVITE", sdp);
        dialog.cseq += 1;
        self.send_raw(invite.as_bytes()).await;
        let r = self.final_response(Duration::from_secs(5)).await?;
        let mut ack = self.request("ACK", &target, &call_id, &from_tag, &to, cseq, "ACK", "");
        if r.status >= 300 {
            // The ACK of a failure belongs to the INVITE's transaction: the same branch
            // (RFC 3261 §17.1.1.3), else the server retransmits its failure.
            let branch = |m: &str| {
                m.split("branch=").nth(1).and_then(|b| b.split(';').next()).map(str::to_owned)
            };
            if let (Some(ours), Some(invite)) = (branch(&ack), branch(&invite)) {
                ack = ack.replacen(&ours, &invite, 1);
            }
        }
        self.send_raw(ack.as_bytes()).await;
        Some(r)
    }

    /// An OPTIONS ping; its final response.
    pub async fn options(&mut self) -> Option<SipResponse> {
        let uri = format!("sip:{}", self.server);
        let call_id = format!("opt{}", self.next());
        let req =
            self.request("OPTIONS", &uri, &call_id, "ot", &format!("<{uri}>"), 1, "OPTIONS", "");
        self.send_raw(req.as_bytes()).await;
        self.final_response(Duration::from_secs(3)).await
    }
}

/// The Via branch of a request. The ACK of a failure belongs to the INVITE's transaction:
/// it reuses the branch (RFC 3261 §17.1.1.3), else the server retransmits its failure.
fn branch(request: &str) -> Option<String> {
    request.split("branch=").nth(1).and_then(|b| b.split(';').next()).map(str::to_owned)
}

/// An SDP offer of PCMU and telephone-event, receiving on `rtp`.
pub fn pcmu_offer(rtp: SocketAddr) -> String {
    format!(
        "v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\nm=audio {port} RTP/AVP 0 101\r\n\
         a=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=ptime:20\r\na=sendrecv\r\n",
        ip = rtp.ip(),
        port = rtp.port()
    )
}
