-- The change feed: every write and removal gets the next sequence number, in commit order.
--
-- Not a SEQUENCE: two transactions can take 5 and 6 and commit 6 first, and a reader that saw 6 would
-- never see 5. The one-row counter is incremented as the LAST statement of each writing transaction:
-- its row lock is held until commit, so the next writer gets its number only after this one committed.
CREATE TABLE change_counter (
    only_row BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (only_row),
    seq      BIGINT NOT NULL
);
INSERT INTO change_counter (only_row, seq) VALUES (TRUE, 0);

CREATE TABLE changes (
    seq       BIGINT PRIMARY KEY,
    source    TEXT NOT NULL,
    ticket_id TEXT NOT NULL,
    hash      TEXT NOT NULL,
    kind      TEXT NOT NULL CHECK (kind IN ('written', 'removed')),
    at        TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Tickets stored before the feed existed enter it once, so an indexer reading from 0 sees every one.
INSERT INTO changes (seq, source, ticket_id, hash, kind)
SELECT row_number() OVER (ORDER BY hash), source, ticket_id, hash, 'written' FROM tickets;
UPDATE change_counter SET seq = (SELECT count(*) FROM tickets);
