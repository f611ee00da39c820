//! A hostile peer built from the real state machine (`Endpoint::set_tamper`, feature
//! `test-util` of hometun-ike): every protected message it sends is sealed correctly, after
//! the fuzzer's script changed its inner payloads (dropped, duplicated, reordered, replaced,
//! added, mutated) and, now and then, its header (message ID, flags, exchange type). It sees
//! what the victim sends it, so it can echo a COOKIE2 or name the victim's SPIs.

use std::sync::{Arc, Mutex, MutexGuard};

use hometun_ike::io::Tamper;
use hometun_ike::wire::{ExchangeType, Header, Notify, NotifyType, Payload};

use crate::choices::Script;
use crate::craft::{self, Known};

/// What the hostile peer holds: its script and what it learned.
#[derive(Debug, Default)]
pub struct HostileState {
    /// The fuzzer's edits, read one group per message.
    pub script: Script,
    /// Add MOBIKE_SUPPORTED to IKE_AUTH requests (a home that claims MOBIKE: the server's
    /// address update code is reachable only then).
    pub claim_mobike: bool,
    /// Leave INITIAL_CONTACT out of the next IKE_AUTH request (a re-authentication).
    pub omit_initial_contact: bool,
    /// What it saw and may use.
    pub known: Known,
    /// A header change decided by the payload edits of the same message.
    header_edit: Option<HeaderEdit>,
    /// Messages changed so far.
    pub changed: u64,
    /// Print each change (FUZZ_TRACE set).
    pub trace: bool,
}

/// A change of the header of one message.
#[derive(Debug, Clone, Copy)]
pub enum HeaderEdit {
    /// Another message ID.
    MessageId(u32),
    /// The message ID moved by a little.
    MessageIdDelta(i8),
    /// The response flag flipped.
    FlipResponse,
    /// The initiator flag flipped.
    FlipInitiator,
    /// Another exchange type.
    Exchange(u8),
}

impl HeaderEdit {
    /// Applies the change.
    pub fn apply(self, header: &mut Header) {
        match self {
            HeaderEdit::MessageId(id) => header.message_id = id,
            HeaderEdit::MessageIdDelta(d) => {
                header.message_id = header.message_id.wrapping_add_signed(i32::from(d))
            }
            HeaderEdit::FlipResponse => {
                header.flags = hometun_ike::wire::Flags::new(
                    header.flags.initiator(),
                    !header.flags.response(),
                )
            }
            HeaderEdit::FlipInitiator => {
                header.flags = hometun_ike::wire::Flags::new(
                    !header.flags.initiator(),
                    header.flags.response(),
                )
            }
            HeaderEdit::Exchange(e) => header.exchange_type = ExchangeType(e),
        }
    }
}

/// The tamper hook of a hostile endpoint; clones share one state.
#[derive(Clone, Default)]
pub struct Hostile(pub Arc<Mutex<HostileState>>);

impl Hostile {
    /// A hostile peer that follows `script`.
    pub fn new(script: &[u8], trace: bool) -> Self {
        Hostile(Arc::new(Mutex::new(HostileState {
            script: Script::new(script),
            trace,
            ..HostileState::default()
        })))
    }

    /// Its state.
    pub fn state(&self) -> MutexGuard<'_, HostileState> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Tamper for Hostile {
    fn outgoing(&mut self, header: &Header, payloads: &mut Vec<Payload>) {
        let mut state = self.state();
        if header.exchange_type == ExchangeType::IKE_AUTH && !header.flags.response() {
            if state.claim_mobike {
                payloads.push(Payload::Notify(Notify::new(
                    NotifyType::MOBIKE_SUPPORTED,
                    Vec::new(),
                )));
            }
            if state.omit_initial_contact {
                state.omit_initial_contact = false;
                payloads.retain(
                    |p| !matches!(p, Payload::Notify(n) if n.notify_type == NotifyType::INITIAL_CONTACT),
                );
            }
        }
        let before = payloads.clone();
        let known = state.known.clone();
        let edit = state.script.read(|c| edit_payloads(c, payloads, &known));
        if !encodes(payloads) {
            // What cannot be put on the wire is no message: the peer sends the original.
            *payloads = before.clone();
        }
        state.header_edit = edit;
        if *payloads != before || edit.is_some() {
            state.changed += 1;
            if state.trace {
                eprintln!(
                    "hostile: {} {} #{}: {:?} -> {:?}, header {:?}",
                    header.exchange_type,
                    if header.flags.response() {
                        "response"
                    } else {
                        "request"
                    },
                    header.message_id,
                    names(&before),
                    names(payloads),
                    edit
                );
            }
        }
    }

    fn header(&mut self, header: &mut Header) {
        if let Some(edit) = self.state().header_edit.take() {
            edit.apply(header);
        }
    }

    fn incoming(&mut self, header: &Header, payloads: &[Payload]) {
        let mut state = self.state();
        if state.trace {
            eprintln!(
                "hostile: got {} {} #{}: {:?}",
                header.exchange_type,
                if header.flags.response() {
                    "response"
                } else {
                    "request"
                },
                header.message_id,
                names(payloads)
            );
        }
        for payload in payloads {
            match payload {
                Payload::Notify(n) if n.notify_type == NotifyType::COOKIE2 => {
                    state.known.cookie2 = Some(n.data.clone())
                }
                Payload::Notify(n) if n.notify_type == NotifyType::REKEY_SA => {
                    if let Ok(spi) = <[u8; 4]>::try_from(n.spi.as_slice()) {
                        remember(&mut state.known.esp_spis, u32::from_be_bytes(spi));
                    }
                }
                Payload::Nonce(n) => state.known.nonce = Some(n.data.clone()),
                Payload::Ke(k) => state.known.ke = Some(k.clone()),
                Payload::Sa(sa) => {
                    for p in &sa.proposals {
                        if let Ok(spi) = <[u8; 4]>::try_from(p.spi.as_slice()) {
                            remember(&mut state.known.esp_spis, u32::from_be_bytes(spi));
                        }
                        if let Ok(spi) = <[u8; 8]>::try_from(p.spi.as_slice()) {
                            remember(&mut state.known.ike_spis, u64::from_be_bytes(spi));
                        }
                    }
                }
                _ => {}
            }
        }
    }
}

/// Keeps at most 16 values, newest last.
pub fn remember<T: PartialEq>(list: &mut Vec<T>, value: T) {
    if !list.contains(&value) {
        if list.len() >= 16 {
            list.remove(0);
        }
        list.push(value);
    }
}

/// Whether the payloads encode (an SK payload holds at most 64 KiB; every field its range).
fn encodes(payloads: &[Payload]) -> bool {
    let len = hometun_ike::wire::payloads_len(payloads);
    let mut buf = vec![0u8; len];
    len < 60_000 && hometun_ike::wire::emit_payloads(payloads, &mut buf).is_ok()
}

fn names(payloads: &[Payload]) -> Vec<String> {
    payloads.iter().map(ToString::to_string).collect()
}

/// One message's edits (changes `payloads`; returns a header change, if any): a count byte (none when the script is over), then that many edits.
pub fn edit_payloads(
    c: &mut crate::choices::Choices<'_>,
    payloads: &mut Vec<Payload>,
    known: &Known,
) -> Option<HeaderEdit> {
    let count = c.byte()? % 6;
    let mut header = None;
    for _ in 0..count {
        let Some(op) = c.byte() else {
            break;
        };
        let index = |c: &mut crate::choices::Choices<'_>, len: usize| -> Option<usize> {
            Some(usize::from(c.byte()?) % len.max(1))
        };
        match op % 14 {
            0 if !payloads.is_empty() => {
                let i = index(c, payloads.len())?;
                payloads.remove(i);
            }
            1 if !payloads.is_empty() => {
                let i = index(c, payloads.len())?;
                let copy = payloads[i].clone();
                payloads.insert(i, copy);
            }
            2 if payloads.len() >= 2 => {
                let (i, j) = (index(c, payloads.len())?, index(c, payloads.len())?);
                payloads.swap(i, j);
            }
            3 => {
                let i = index(c, payloads.len() + 1)?;
                let p = craft::payload(c, known)?;
                payloads.insert(i.min(payloads.len()), p);
            }
            4 if !payloads.is_empty() => {
                let i = index(c, payloads.len())?;
                payloads[i] = craft::same_kind(c, &payloads[i], known)?;
            }
            5 if !payloads.is_empty() => {
                let i = index(c, payloads.len())?;
                if let Some(p) = craft::mutated(c, &payloads[i])? {
                    payloads[i] = p;
                }
            }
            6 => {
                // The selectors: what a hostile home wants most.
                let tsi = craft::selectors(c)?;
                let tsr = craft::selectors(c)?;
                for p in payloads.iter_mut() {
                    match p {
                        Payload::TsI(t) => *t = tsi.clone(),
                        Payload::TsR(t) => *t = tsr.clone(),
                        _ => {}
                    }
                }
            }
            7 => payloads.push(Payload::Notify(craft::notify(c, known)?)),
            8 => payloads.push(Payload::Delete(craft::delete(c, known)?)),
            9 => {
                // Every payload of one kind replaced (an SA, KE or nonce in a rekey).
                let kind = c.byte()? % 3;
                for p in payloads.iter_mut() {
                    match (kind, &*p) {
                        (0, Payload::Sa(_)) => {
                            *p = Payload::Sa(craft::security_association(c, known)?)
                        }
                        (1, Payload::Ke(_)) => *p = Payload::Ke(craft::key_exchange(c, known)?),
                        (2, Payload::Nonce(_)) => *p = Payload::Nonce(craft::nonce(c, known)?),
                        _ => {}
                    }
                }
            }
            10 => payloads.clear(),
            11 => {
                header = Some(match c.byte()? % 6 {
                    0 => HeaderEdit::MessageId(c.u32()?),
                    1 | 2 => HeaderEdit::MessageIdDelta((c.byte()? % 5) as i8 - 2),
                    3 => HeaderEdit::FlipResponse,
                    4 => HeaderEdit::FlipInitiator,
                    _ => HeaderEdit::Exchange(33 + c.byte()? % 6),
                })
            }
            12 => {
                // An echo of the COOKIE2 it saw (a MOBIKE return-routability answer).
                if let Some(cookie2) = &known.cookie2 {
                    payloads.push(Payload::Notify(Notify::new(
                        NotifyType::COOKIE2,
                        cookie2.clone(),
                    )));
                }
            }
            _ => {}
        }
    }
    header
}
