-- 0014: pictures and voice notes (media). The bytes live in the blob store (a directory or
-- S3-compatible storage), each variant sealed with AES-256-GCM under the conversation's data
-- key (conversation_keys), so shredding the conversation makes them unreadable; this table
-- holds what the hub knows about each item and where its variants are.

CREATE TABLE media (
    id               uuid PRIMARY KEY,
    conversation_id  uuid NOT NULL REFERENCES conversations (id),
    uploader_id      uuid NOT NULL REFERENCES users (id),
    kind             text NOT NULL CHECK (kind IN ('image', 'voice')),
    -- the type judged by content (the declared one had to match it)
    content_type     text NOT NULL CHECK (content_type IN ('image/jpeg', 'image/png', 'image/webp',
                                                           'audio/ogg', 'audio/webm', 'audio/mp4')),
    -- bytes of the full variant as served (re-encoded pictures; voice as uploaded)
    bytes            bigint NOT NULL CHECK (bytes >= 0),
    uploaded_bytes   bigint NOT NULL CHECK (uploaded_bytes >= 0),
    width            integer CHECK (width > 0),
    height           integer CHECK (height > 0),
    duration_ms      integer CHECK (duration_ms >= 0),
    -- at most 64 values 0..100 (voice)
    waveform         smallint[] CHECK (waveform IS NULL OR cardinality(waveform) <= 64),
    -- ready: served; quarantined: waiting for the scanner; rejected: the scanner found something
    state            text NOT NULL CHECK (state IN ('ready', 'quarantined', 'rejected')),
    -- {"full": {"key": "...", "content_type": "...", "bytes": n, "width": w, "height": h}, "thumb": ..., "preview": ...}
    variants         jsonb NOT NULL,
    -- how the variants are sealed (bankhub.media.sealing.MEDIA_KEY_ID)
    key_id           text NOT NULL,
    -- the scanner: a node working on it (claim), and when the verdict came
    scan_claimed_at  timestamptz,
    scanned_at       timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    -- when a committed message first carried it; until then it is its uploader's draft (nobody
    -- else may see it), counts against the uploader's pending cap, and is deleted by the sweep
    -- once older than media_unattached_seconds
    attached_at      timestamptz,
    CHECK ((kind = 'image') = (width IS NOT NULL AND height IS NOT NULL)),
    CHECK ((kind = 'voice') = (duration_ms IS NOT NULL))
);

CREATE INDEX media_conversation ON media (conversation_id, created_at);
-- the scan sweep looks only at what waits
CREATE INDEX media_quarantined ON media (created_at) WHERE state = 'quarantined';
-- the uploader's pending cap and the sweep of items no message carries
CREATE INDEX media_pending ON media (uploader_id) WHERE attached_at IS NULL;
CREATE INDEX media_unattached ON media (created_at) WHERE attached_at IS NULL;
