"""Wire and media formats: Opus, RTP/RTCP, Ogg Opus and PCM helpers. Sync, no I/O, no clock."""

SAMPLE_RATE = 48_000
CHANNELS = 1
FRAME_MS = 20
FRAME_SAMPLES = SAMPLE_RATE * FRAME_MS // 1000  # 960
FRAME_S = FRAME_MS / 1000
OPUS_PAYLOAD_TYPE = 111
RED_PAYLOAD_TYPE = 112  # RFC 2198 redundancy around Opus (dynamic: the welcome and SDP say it)
