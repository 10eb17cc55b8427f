"""Every Redis key is spelled here, once.

Keys of one tenant share the hash tag `{tenant}`, so each atomic script touches one Redis
Cluster slot while different tenants shard across the cluster.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class TenantKeys:
    """Key builder for one tenant."""

    tenant_id: str

    @property
    def _tag(self) -> str:
        return f"t:{{{self.tenant_id}}}"

    def calendar(self, calendar_id: str) -> str:
        """JSON of one calendar's configuration."""
        return f"{self._tag}:cal:{calendar_id}"

    def calendars(self) -> str:
        """Set of the tenant's calendar ids."""
        return f"{self._tag}:cals"

    def calendar_bookings(self, calendar_id: str) -> str:
        """Sorted set of a calendar's bookings: score = core start, member = `end|booking_id|user_id`
        (core end; buffers are applied when checking, services/booking/lua/book.lua)."""
        return f"{self._tag}:cal:{calendar_id}:busy"

    def external_busy(self, calendar_id: str) -> str:
        """Sorted set of imported busy blocks: score = start, member = `end|source:start`
        (services/calendar/lua/import_busy.lua)."""
        return f"{self._tag}:cal:{calendar_id}:ext"

    def booking(self, booking_id: str) -> str:
        """JSON of one booking."""
        return f"{self._tag}:bk:{booking_id}"

    def invitation(self, booking_id: str) -> str:
        """Hash of a booking's current .ics invitation (services/booking/invitations.py);
        `bkinv`, so that it never matches the `bk:*` booking keys."""
        return f"{self._tag}:bkinv:{booking_id}"

    def invitations(self) -> str:
        """Stream of the tenant's rendered invitations, one entry per stored version (a mailer's outbox)."""
        return f"{self._tag}:invitations"

    def booking_revision(self, booking_id: str) -> str:
        """Counter of a booking's changes (its iCalendar SEQUENCE); `bkrev`, so that it never
        matches the `bk:*` booking keys."""
        return f"{self._tag}:bkrev:{booking_id}"

    def user_bookings(self, user_id: str) -> str:
        """Sorted set of a user's booking ids by start time."""
        return f"{self._tag}:user:{user_id}:bks"

    def user_booking_docs(self, user_id: str) -> str:
        """Hash of the JSON of the bookings in `user_bookings`, by id: the write scripts keep it
        beside each booking's own key, so that listing a user's bookings is one read."""
        return f"{self._tag}:user:{user_id}:docs"

    def idempotency(self, key: str) -> str:
        """Hash of one idempotency key's first result: `fp` (the request's fingerprint), `result`
        and, for booking writes, `meta`, `seq`, `attempt` (services/booking/lua/write_once.lua)."""
        return f"{self._tag}:idem:{key}"

    def conversation(self, conversation_id: str) -> str:
        """List of a conversation's model messages (JSON)."""
        return f"{self._tag}:conv:{conversation_id}"

    def http_request(self, scoped_key: str) -> str:
        """The stored response of one HTTP request by its Idempotency-Key."""
        return f"{self._tag}:req:{scoped_key}"

    def conversation_turns(self, conversation_id: str) -> str:
        """How many turns a conversation has had (its history is trimmed; this is not)."""
        return f"{self._tag}:conv:{conversation_id}:n"

    def rate_bucket(self, name: str) -> str:
        """A token bucket of the tenant's rate limits."""
        return f"{self._tag}:rate:{name}"

    def holds(self, calendar_id: str) -> str:
        """Sorted set of a calendar's short holds on proposed slots: score = start,
        member = `end|conversation|expires` (epoch s); see runtime/offers.py."""
        return f"{self._tag}:cal:{calendar_id}:holds"

    def action(self, action_id: str) -> str:
        """Hash of one pending action (a write waiting for the user's approval): `data` (JSON),
        `status`, `since`; see services/chat/approvals.py."""
        return f"{self._tag}:act:{action_id}"

    def pending_action(self, conversation_id: str) -> str:
        """The id of the conversation's one pending action, while it awaits an answer."""
        return f"{self._tag}:conv:{conversation_id}:pending"

    def offers(self, conversation_id: str) -> str:
        """Hash of the slots offered in one conversation: `<calendar_id>|<start>` -> expiry,
        `ref|<ref>` -> `<start>|<duration>|<calendar ids>`, `at|<calendar ids>|<start>` -> ref,
        `#refs`; see runtime/offers.py."""
        return f"{self._tag}:conv:{conversation_id}:offers"


def api_key(key_digest: str) -> str:
    """Tenant id of an API key, by the key's sha256 (looked up before the tenant is known)."""
    return f"apikey:{key_digest}"
