"""A WHIP publisher built on GStreamer's webrtcbin, as GStreamer users publish to loa.

Run by the *system* python3 (Debian's python3-gi; the virtualenv has no ``gi``), as a
subprocess of the test: ``/usr/bin/python3 tests/support/gst_whip.py URL --token T``.
It publishes a live sine (audiotestsrc → opusenc → rtpopuspay → webrtcbin), POSTs the
offer with every candidate gathered (no trickle, like the server), applies the answer, and
prints one JSON object per line on stdout for the test to follow:
``{"event": "answered", "status": 201, "location": ..., "answer": ...}``,
``{"event": "state", "connection": "connected"}``, ``{"event": "refused", ...}``,
``{"event": "error", "message": ...}``, ``{"event": "deleted", "status": 200}``.
It stops when its stdin closes (DELETE first) or after ``--seconds``.

webrtcbin's DTLS certificate is RSA (GStreamer's dtls element makes a 2048-bit RSA key),
which is what makes it a useful peer: a server that insists on being the DTLS client
with an ECDSA-only cipher list fails the handshake with "no shared cipher".

libnice leaves loopback out of its host candidates; ``--loopback`` (the default) gives it
127.0.0.1 only, so the test stays on loopback. Only the standard library and gi here."""

from __future__ import annotations

import argparse
import json
import sys
import threading
import urllib.error
import urllib.parse
import urllib.request

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstSdp", "1.0")
gi.require_version("GstWebRTC", "1.0")
gi.require_version("Nice", "0.1")
from gi.repository import GLib, Gst, GstSdp, GstWebRTC, Nice  # noqa: E402

AUDIO = (
    "audiotestsrc is-live=true wave=sine freq={freq} volume=0.5 ! audioconvert ! audioresample"
    " ! audio/x-raw,rate=48000,channels=1 ! opusenc bitrate=32000 frame-size=20"
    " ! rtpopuspay pt=111 ! application/x-rtp,media=audio,encoding-name=OPUS,payload=111"
    " ! webrtcbin name=pub bundle-policy=max-bundle"
)
# An OBS-shaped publisher also sends video (OBS: H.264; VP8 here, in Debian's -good plugins).
VIDEO = (
    " videotestsrc is-live=true ! video/x-raw,width=320,height=240,framerate=15/1"
    " ! vp8enc deadline=1 ! rtpvp8pay pt=96"
    " ! application/x-rtp,media=video,encoding-name=VP8,payload=96 ! pub."
)


def say(event: str, **fields: object) -> None:
    print(json.dumps({"event": event, **fields}), flush=True)


class Publisher:
    """One webrtcbin and its WHIP resource, driven by the GLib main loop."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.loop = GLib.MainLoop()
        self.pipe = Gst.parse_launch(AUDIO.format(freq=args.freq) + (VIDEO if args.video else ""))
        self.webrtc = self.pipe.get_by_name("pub")
        self.location: str | None = None
        self.posted = False
        if args.loopback:
            # Kept referenced for the pipeline's life: webrtcbin hands the ICE object out
            # floating, so a temporary Python wrapper would sink it and drop the last ref.
            self.ice = self.webrtc.get_property("ice-agent")
            self.agent = self.ice.get_property("agent")
            self.agent.set_property("upnp", False)  # no SSDP multicast from a test
            address = Nice.Address()
            address.set_from_string("127.0.0.1")
            self.agent.add_local_address(address)
        self.webrtc.connect("on-negotiation-needed", self._on_negotiation_needed)
        self.webrtc.connect("notify::ice-gathering-state", self._on_gathering)
        self.webrtc.connect("notify::connection-state", self._on_connection)
        bus = self.pipe.get_bus()
        bus.add_signal_watch()
        bus.connect("message::error", self._on_error)

    # -- negotiation --------------------------------------------------------------------
    def _on_negotiation_needed(self, webrtc: Gst.Element) -> None:
        promise = Gst.Promise.new_with_change_func(self._on_offer, None)
        webrtc.emit("create-offer", None, promise)

    def _on_offer(self, promise: Gst.Promise, _data: object) -> None:
        reply = promise.get_reply()  # held: the offer lives inside it, uncopied
        offer = reply.get_value("offer")
        self.webrtc.emit("set-local-description", offer, Gst.Promise.new())
        del offer, reply

    def _on_gathering(self, webrtc: Gst.Element, _pspec: object) -> None:
        state = webrtc.get_property("ice-gathering-state")
        if state == GstWebRTC.WebRTCICEGatheringState.COMPLETE and not self.posted:
            self.posted = True
            sdp = webrtc.get_property("local-description").sdp.as_text()
            threading.Thread(target=self._post, args=(sdp,), daemon=True).start()

    def _post(self, offer: str) -> None:
        request = urllib.request.Request(
            self.args.url, data=offer.encode(), method="POST", headers=self._headers()
        )
        request.add_header("Content-Type", "application/sdp")
        try:
            with urllib.request.urlopen(request, timeout=10) as resp:
                status, answer = resp.status, resp.read().decode()
                location = resp.headers.get("Location")
                broadcast = resp.headers.get("X-Loa-Broadcast")
        except urllib.error.HTTPError as exc:
            say("refused", status=exc.code, body=exc.read().decode(errors="replace"))
            GLib.idle_add(self.loop.quit)
            return
        except OSError as exc:
            say("error", message=f"POST {self.args.url}: {exc}")
            GLib.idle_add(self.loop.quit)
            return
        self.location = urllib.parse.urljoin(self.args.url, location) if location else None
        say(
            "answered",
            status=status,
            location=self.location,
            broadcast=broadcast,
            offer=offer,
            answer=answer,
        )
        GLib.idle_add(self._apply_answer, answer)

    def _apply_answer(self, answer: str) -> bool:
        ok, message = GstSdp.SDPMessage.new_from_text(answer)
        if ok != GstSdp.SDPResult.OK:
            say("error", message="the answer is not SDP")
            self.loop.quit()
            return False
        desc = GstWebRTC.WebRTCSessionDescription.new(GstWebRTC.WebRTCSDPType.ANSWER, message)
        promise = Gst.Promise.new_with_change_func(self._on_answer_set, None)
        self.webrtc.emit("set-remote-description", desc, promise)
        return False

    def _on_answer_set(self, promise: Gst.Promise, _data: object) -> None:
        reply = promise.get_reply()
        error = reply.get_value("error") if reply is not None and reply.has_field("error") else None
        if error is not None:
            say("error", message=f"the answer was not applied: {error.message}")
            GLib.idle_add(self._quit)
        else:
            say("applied")

    # -- state --------------------------------------------------------------------------
    def _on_connection(self, webrtc: Gst.Element, _pspec: object) -> None:
        state = webrtc.get_property("connection-state")
        say("state", connection=state.value_nick)

    def _on_error(self, _bus: Gst.Bus, message: Gst.Message) -> None:
        err, debug = message.parse_error()
        say("error", message=f"{err.message} ({debug})")
        self.loop.quit()

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.args.token}"} if self.args.token else {}

    def delete(self) -> None:
        if self.location is None:
            return
        request = urllib.request.Request(self.location, method="DELETE", headers=self._headers())
        try:
            with urllib.request.urlopen(request, timeout=5) as resp:
                say("deleted", status=resp.status)
        except urllib.error.HTTPError as exc:
            say("deleted", status=exc.code)
        except OSError as exc:
            say("error", message=f"DELETE {self.location}: {exc}")

    def run(self) -> None:
        threading.Thread(target=self._watch_stdin, daemon=True).start()
        GLib.timeout_add(int(self.args.seconds * 1000), self._quit)
        self.pipe.set_state(Gst.State.PLAYING)
        try:
            self.loop.run()
        finally:
            self.report_sent()
            self.delete()
            self.pipe.set_state(Gst.State.NULL)

    def report_sent(self) -> None:
        """What webrtcbin's own statistics say it sent, per kind of media."""
        promise = Gst.Promise.new()
        self.webrtc.emit("get-stats", None, promise)
        promise.wait()
        stats = promise.get_reply()
        sent: dict[str, int] = {}  # kind → RTP packets sent
        for i in range(stats.n_fields()):
            value = stats.get_value(stats.nth_field_name(i))
            if isinstance(value, Gst.Structure) and value.get_name() == "outbound-rtp":
                kind = value.get_string("kind")
                ok, packets = value.get_uint64("packets-sent")
                sent[kind] = sent.get(kind, 0) + (packets if ok else 0)
        say("sent", packets=sent)

    def _watch_stdin(self) -> None:
        sys.stdin.read()  # returns when the test closes our stdin
        GLib.idle_add(self._quit)

    def _quit(self) -> bool:
        self.loop.quit()
        return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url", help="the WHIP endpoint, e.g. http://127.0.0.1:8080/api/v1/whip")
    parser.add_argument("--token", help="the bearer token")
    parser.add_argument("--freq", type=float, default=440.0, help="sine frequency (Hz)")
    parser.add_argument("--seconds", type=float, default=60.0, help="stop after this long")
    parser.add_argument("--video", action="store_true", help="offer a video track too")
    parser.add_argument(
        "--no-loopback", dest="loopback", action="store_false", help="let libnice pick addresses"
    )
    args = parser.parse_args()
    Gst.init(None)
    Publisher(args).run()


if __name__ == "__main__":
    main()
