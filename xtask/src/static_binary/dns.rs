//! A one-name DNS responder, to prove the static binary resolves names through DNS.

use std::net::UdpSocket;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};

use super::DNS_ADDR;

/// A DNS server on [`DNS_ADDR`] that answers `A 127.0.0.1` for one name, no address for its
/// AAAA, NXDOMAIN otherwise, and records every question.
pub(super) struct DnsResponder {
    stop: Arc<AtomicBool>,
    queries: Arc<Mutex<Vec<(String, u16)>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl DnsResponder {
    pub(super) fn start(name: &str) -> Result<DnsResponder> {
        let socket = UdpSocket::bind(DNS_ADDR).with_context(|| {
            format!("binding the DNS responder on {DNS_ADDR} (is a resolver listening on *:53?)")
        })?;
        socket.set_read_timeout(Some(Duration::from_millis(100)))?;
        let stop = Arc::new(AtomicBool::new(false));
        let queries = Arc::new(Mutex::new(Vec::new()));
        let name = name.to_string();
        let thread = {
            let (stop, queries) = (stop.clone(), queries.clone());
            std::thread::spawn(move || {
                let mut buf = [0u8; 512];
                while !stop.load(Ordering::Relaxed) {
                    let Ok((n, peer)) = socket.recv_from(&mut buf) else {
                        continue;
                    };
                    if let Some((asked, qtype, reply)) = dns_reply(&buf[..n], &name) {
                        queries.lock().unwrap().push((asked, qtype));
                        let _ = socket.send_to(&reply, peer);
                    }
                }
            })
        };
        Ok(DnsResponder {
            stop,
            queries,
            thread: Some(thread),
        })
    }

    pub(super) fn queries(&self) -> Vec<(String, u16)> {
        self.queries.lock().unwrap().clone()
    }
}

impl Drop for DnsResponder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The reply to a one-question DNS query: (name asked, QTYPE, reply packet). `None` for what
/// is not a well-formed standard query.
pub(super) fn dns_reply(query: &[u8], name: &str) -> Option<(String, u16, Vec<u8>)> {
    const A: u16 = 1;
    if query.len() < 12 || query[2] & 0x80 != 0 || u16::from_be_bytes([query[4], query[5]]) != 1 {
        return None;
    }
    let mut labels = Vec::new();
    let mut at = 12;
    loop {
        let len = *query.get(at)? as usize;
        at += 1;
        if len == 0 {
            break;
        }
        if len > 63 {
            return None; // no compression in a question
        }
        labels.push(String::from_utf8_lossy(query.get(at..at + len)?).to_ascii_lowercase());
        at += len;
    }
    let qtype = u16::from_be_bytes([*query.get(at)?, *query.get(at + 1)?]);
    let question_end = at + 4;
    query.get(..question_end)?;
    let asked = labels.join(".");
    let known = asked == name;
    let answer = known && qtype == A;
    // QR, the query's opcode and RD, AA, RA; NXDOMAIN for names it does not know.
    let flags = 0x8000 | (u16::from_be_bytes([query[2], query[3]]) & 0x7900) | 0x0400 | 0x0080;
    let flags = if known { flags } else { flags | 3 };
    let mut reply = Vec::with_capacity(question_end + 16);
    reply.extend_from_slice(&query[..2]);
    reply.extend_from_slice(&flags.to_be_bytes());
    reply.extend_from_slice(&[0, 1, 0, u8::from(answer), 0, 0, 0, 0]);
    reply.extend_from_slice(&query[12..question_end]);
    if answer {
        // Name pointer to the question, A IN, TTL 5 s, 4 bytes: 127.0.0.1.
        reply.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 5, 0, 4, 127, 0, 0, 1]);
    }
    Some((asked, qtype, reply))
}
