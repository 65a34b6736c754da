#!/usr/bin/env python3
"""A small loopback RTSP server for tests and demos (GStreamer's GstRtspServer).

Run it with Debian's interpreter, which has PyGObject (``python3-gi``)::

    /usr/bin/python3 tools/rtsp_loop.py PORT NAME SOURCE [--reencode]

* ``SOURCE`` = ``testsrc``: a synthetic live 320x240 @ 25 fps pattern (bouncing ball), H.264.
* ``SOURCE`` = an H.264 ``.mp4``: served in an endless, seamless loop without re-encoding.
* any other file GStreamer can decode, or ``--reencode``: decoded and re-encoded to H.264
  (decoding H.264 and mp4v needs ``gstreamer1.0-libav``).

Started with another interpreter (e.g. a venv's, which has no ``gi``), it says so and exits with
status 2.

It listens on 127.0.0.1 only. ``PORT`` 0 picks a free port. When ready it prints one line,
``serving rtsp://127.0.0.1:PORT/NAME``, and then serves until killed. If the port cannot be
bound it exits with status 1 and a message on stderr.

Debian packages: python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base
gstreamer1.0-plugins-good gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly gstreamer1.0-libav.
"""

from __future__ import annotations

import argparse
import sys
import time

NEEDS = ("run me with /usr/bin/python3 (needs python3-gi and GStreamer's RTSP server: apt-get install "
         "python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base gstreamer1.0-plugins-good "
         "gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly gstreamer1.0-libav)")

try:
    import gi

    gi.require_version("Gst", "1.0")
    gi.require_version("GstRtspServer", "1.0")
    from gi.repository import GLib, Gst, GstRtspServer
except (ImportError, ValueError) as exc:  # not Debian's interpreter, or the packages are missing
    print(f"tools/rtsp_loop.py: {NEEDS}; {sys.executable} cannot load it: {exc}", file=sys.stderr)
    sys.exit(2)

ENCODE = "x264enc tune=zerolatency speed-preset=ultrafast key-int-max=25"
PAY = "rtph264pay name=pay0 pt=96 config-interval=1"


def launch_line(source: str, reencode: bool) -> str:
    """The gst-launch description of the media pipeline for ``source``."""
    if source == "testsrc":
        return (f"( videotestsrc is-live=true pattern=ball "
                f"! video/x-raw,width=320,height=240,framerate=25/1 ! {ENCODE} ! {PAY} )")
    if source.lower().endswith(".mp4") and not reencode:
        # the element named "parse" gets the loop probe (see loop_forever)
        return f'( filesrc location="{source}" ! qtdemux ! h264parse name=parse ! {PAY} )'
    return f'( filesrc location="{source}" ! decodebin ! videoconvert name=parse ! {ENCODE} ! {PAY} )'


def loop_forever(media: GstRtspServer.RTSPMedia) -> None:
    """Make a file-backed media restart at the end instead of sending EOS, seamlessly.

    A segment seek makes the demuxer post SEGMENT_DONE (not EOS) at the end of the file. The
    media owns the pipeline bus, so the event is caught with a pad probe; it is dropped and a
    non-flushing segment seek back to 0 is queued, so running time keeps going. The demuxer starts
    the next pass at the running time of the last frame's *start*, so the first frame of every pass
    would repeat the last one's timestamp: the pad's offset grows by one frame duration per pass, so
    the timestamps a client sees increase strictly across the loop.
    """
    pipeline = media.get_element()
    pad = pipeline.get_by_name("parse").get_static_pad("src")
    last = {"duration": 0}

    def seek(flags: Gst.SeekFlags) -> bool:
        pipeline.seek_simple(Gst.Format.TIME, flags, 0)
        return False  # run once

    def on_data(pad: Gst.Pad, info: Gst.PadProbeInfo) -> Gst.PadProbeReturn:
        if info.type & Gst.PadProbeType.BUFFER:
            duration = info.get_buffer().duration
            if duration != Gst.CLOCK_TIME_NONE:
                last["duration"] = duration
            return Gst.PadProbeReturn.OK
        event = info.get_event()
        if event is not None and event.type == Gst.EventType.SEGMENT_DONE:
            pad.set_offset(pad.get_offset() + last["duration"])
            GLib.idle_add(seek, Gst.SeekFlags.SEGMENT)
            return Gst.PadProbeReturn.DROP
        return Gst.PadProbeReturn.OK

    def first_seek(_media: GstRtspServer.RTSPMedia) -> None:
        # The flushing seek clears the segment event downstream. A client's PLAY handled before the
        # new segment reached the RTP session aborts the server (gst_rtsp_media_get_rates: "no
        # segment event on send_rtp_sink pad"; clients see the connection close mid-handshake), so
        # this waits, in the thread that handles requests, until the segment is there again.
        seek(Gst.SeekFlags.FLUSH | Gst.SeekFlags.SEGMENT)
        rtp_sink = pipeline.get_by_name("pay0").get_static_pad("src").get_peer()
        deadline = time.monotonic() + 10.0
        while rtp_sink.get_sticky_event(Gst.EventType.SEGMENT, 0) is None and time.monotonic() < deadline:
            time.sleep(0.005)

    pad.add_probe(Gst.PadProbeType.EVENT_DOWNSTREAM | Gst.PadProbeType.BUFFER, on_data)
    media.connect("prepared", first_seek)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Serve a looping file or a test pattern over RTSP on 127.0.0.1.")
    ap.add_argument("port", type=int, help="TCP port; 0 = any free port")
    ap.add_argument("name", help="mount name: the URL path")
    ap.add_argument("source", help="'testsrc' or a video file")
    ap.add_argument("--reencode", action="store_true", help="decode and re-encode the file to H.264")
    args = ap.parse_args(argv)

    Gst.init(None)
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(launch_line(args.source, args.reencode))
    factory.set_shared(True)  # all clients share one pipeline
    if args.source != "testsrc":
        factory.connect("media-configure", lambda _factory, media: loop_forever(media))

    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    server.get_mount_points().add_factory("/" + args.name.strip("/"), factory)
    if server.attach(None) == 0:
        print(f"cannot bind 127.0.0.1:{args.port}", file=sys.stderr, flush=True)
        return 1
    print(f"serving rtsp://127.0.0.1:{server.get_bound_port()}/{args.name.strip('/')}", flush=True)
    try:
        GLib.MainLoop().run()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
