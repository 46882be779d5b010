"""Pat's one settings object. Every component reads it; nothing else reads the environment.

Each field is set by an environment variable named ``PAT_`` plus the field name in upper case
(``PAT_SMTP_PORT=2525``). The README lists them all with their defaults.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PAT_", extra="ignore")

    data_dir: Path = Field(Path("data"), description="Where the SQLite store, the Temporal dev "
                           "server's database and the generated TLS certificate live.")
    database_url: str = Field("", description="SQLAlchemy async URL of the store; empty means "
                              "sqlite+aiosqlite:///<data_dir>/pat.db. PostgreSQL: "
                              "postgresql+asyncpg://user:password@host/db.")
    log_level: str = Field("INFO", description="Log level of every Pat process.")
    tenant: str = Field("default", description="Tenant recorded on messages this gateway accepts.")

    smtp_host: str = Field("127.0.0.1", description="Address the SMTP gateway listens on.")
    smtp_port: int = Field(1025, description="Port the SMTP gateway listens on.")
    smtp_hostname: str = Field("pat.localhost", description="Name in the SMTP greeting and in "
                               "message IDs.")
    max_message_size: int = Field(10 * 1024 * 1024, description="Largest message accepted, in "
                                  "bytes; larger ones are refused with 552.")
    max_recipients: int = Field(100, description="Most RCPT TO per message; more get 452.")
    smtp_tls_port: int | None = Field(None, description="Port of a second SMTP listener that "
                                      "speaks TLS from the first byte (SMTPS, RFC 8314; 465 is "
                                      "the usual one), same certificate and policy. Unset: none.")
    smtp_require_tls: bool = Field(False, description="Answer 530 to every command but EHLO, "
                                   "NOOP, STARTTLS and QUIT until the client has issued "
                                   "STARTTLS (RFC 3207); the implicit TLS port is encrypted "
                                   "already.")
    smtp_require_auth: bool | None = Field(None, description="Answer 530 to MAIL until AUTH has "
                                           "succeeded. Unset: required when auth_file is set, "
                                           "not otherwise.")
    smtp_tenant_from_auth: bool = Field(False, description="Record the SMTP AUTH user name as the "
                                        "message's tenant (a name that cannot be a tenant, 1-64 "
                                        "of A-Z a-z 0-9 . _ -, is refused with 535); messages "
                                        "sent without AUTH get tenant.")
    smtp_max_connections: int = Field(100, ge=1, description="Most SMTP sessions open at once "
                                      "across both ports; one more is answered 421 and closed.")
    tls_cert_file: Path | None = Field(None, description="PEM certificate for STARTTLS and the "
                                       "implicit TLS port; when unset a self-signed one is "
                                       "generated into data_dir.")
    tls_key_file: Path | None = Field(None, description="PEM private key for tls_cert_file.")
    auth_file: Path | None = Field(None, description="File of 'user:password' lines; when set, "
                                   "AUTH accepts only those. Unset: any credentials, as MailHog.")
    spool_batch_size: int = Field(512, description="Most messages written in one group commit.")
    spool_max_bytes: int = Field(256 * 1024 * 1024, ge=1, description="Most bytes of messages "
                                 "waiting for their group commit; while they exceed it, MAIL "
                                 "and DATA are answered 452 and the sender retries later.")

    http_host: str = Field("127.0.0.1", description="Address of the web UI and the APIs.")
    http_port: int = Field(8025, description="Port of the web UI and the APIs.")
    ui_auth_file: Path | None = Field(None, description="htpasswd file (bcrypt entries, as "
                                      "`htpasswd -B` writes) of the users who may use the web "
                                      "UI and every API, as MailHog's and Mailpit's "
                                      "--ui-auth-file. When set, or once an API key exists, "
                                      "every route but /healthz and /readyz asks for HTTP Basic "
                                      "auth or a key.")
    http_allowed_hosts: str = Field("", description="Comma-separated host names the HTTP "
                                    "server answers to (the Host header), besides localhost "
                                    "names and http_host; any other gets 421, which stops DNS "
                                    "rebinding. '*' allows any.")

    temporal_address: str = Field("127.0.0.1:7233", description="Temporal frontend host:port.")
    temporal_namespace: str = Field("default", description="Temporal namespace.")
    temporal_task_queue: str = Field("pat-email", description="Task queue of EmailPipeline.")
    temporal_ui_url: str = Field("http://127.0.0.1:8233", description="Base URL of the Temporal "
                                 "UI, used for links to workflow runs.")
    temporal_ui_port: int = Field(8233, description="Port of the dev server's UI under `pat up`.")
    temporal_embedded: bool = Field(True, description="`pat up` starts a Temporal dev server "
                                    "itself; set false to use the server at temporal_address.")

    worker_processes: int = Field(0, ge=0, description="Worker processes `pat up` starts; 0 "
                                  "means one per CPU core. (`pat worker` is always one.)")
    worker_activity_slots: int = Field(16, description="Activities one worker runs at once.")
    worker_workflow_task_slots: int = Field(8, description="Workflow tasks one worker runs at "
                                            "once. Kept small so that under a backlog a task "
                                            "is not held in the worker past its timeout.")

    relay_poll_interval: float = Field(1.0, description="Seconds between outbox scans when the "
                                       "relay is not woken by the gateway.")
    relay_concurrency: int = Field(64, description="Workflow starts the relay keeps in flight.")

    plugin_memory_limit_mb: int = Field(128, description="Hard memory limit of one plugin's V8 "
                                        "isolate, in MB. A ceiling: a manifest's memory_limit_mb "
                                        "may lower it for its plugin, never raise it.")
    plugin_timeout_ms: int = Field(50, description="Time limit of one plugin hook call, in "
                                   "milliseconds. A ceiling: a manifest's timeout_ms may lower "
                                   "it for its plugin, never raise it.")
    plugin_allowed_hosts: str = Field("", description="Comma-separated hosts (host or host:port) "
                                      "that plugins may reach through pat.http and SMTP replies, "
                                      "if their manifest declares them too. Empty: no network.")
    plugin_max_source_bytes: int = Field(256 * 1024, description="Largest plugin source the "
                                         "scanner accepts, in bytes.")

    checks_enabled: bool = Field(True, description="Run the deliverability checks (auth, spam, "
                                 "content, HTML compatibility, links, blocklists) on every "
                                 "message.")
    dns_resolver: str = Field("", description="IP address of the DNS resolver the checks ask "
                              "(SPF, DKIM, DMARC, DNSBL); empty means the system's resolver.")
    dns_port: int = Field(53, description="Port of dns_resolver.")
    dns_cache_seconds: float = Field(60.0, ge=0, description="How long the checks keep a DNS "
                                     "answer, at most its TTL: mail from one domain is looked "
                                     "up once, not once per message. 0: ask every time.")
    dns_timeout: float = Field(3.0, description="Seconds a check waits for one DNS answer; a "
                               "timeout gives the verdict error (temperror).")
    spf_evaluate_ip: str = Field("", description="IP address SPF (and the DNSBL lookup) is "
                                 "evaluated for; empty means the connecting client's address. "
                                 "Set it to your production sending IP.")
    dnsbl_ip_zones: list[str] = Field(["zen.spamhaus.org"], description="DNS blocklists the "
                                      "sending IP is looked up in (JSON list).")
    dnsbl_domain_zones: list[str] = Field(["dbl.spamhaus.org"], description="DNS blocklists "
                                          "the From and envelope domains are looked up in "
                                          "(JSON list).")
    spam_engine: Literal["rspamd", "spamassassin", "none"] = Field(
        "rspamd", description="Engine of the spam check: rspamd (its HTTP API at "
        "rspamd_host:rspamd_port), spamassassin (spamd at spamd_host:spamd_port) or none "
        "(the spam check says none).")
    rspamd_host: str = Field("127.0.0.1", description="Host of rspamd's normal worker; when it "
                             "does not answer the spam check says unavailable.")
    rspamd_port: int = Field(11433, description="Port of rspamd's normal worker. Not rspamd's "
                             "own 11333: Debian's package starts a system rspamd there, with "
                             "its own configuration, and `pat up` runs Pat's beside it.")
    rspamd_embedded: bool = Field(True, description="With spam_engine rspamd, `pat up` starts "
                                  "rspamd on rspamd_host:rspamd_port (unless an rspamd already "
                                  "answers there); set false to use an rspamd of your own.")
    rspamd_timeout: float = Field(15.0, description="Seconds to wait for rspamd's verdict.")
    spamd_host: str = Field("127.0.0.1", description="Host of SpamAssassin's spamd; when it "
                            "does not answer the spam check says unavailable.")
    spamd_port: int = Field(7830, description="Port of spamd. Not SpamAssassin's own 783: "
                            "`pat up` starts spamd as an ordinary user, who cannot listen "
                            "below 1024.")
    spamd_embedded: bool = Field(True, description="With spam_engine spamassassin, `pat up` "
                                 "starts SpamAssassin's spamd on spamd_host:spamd_port (unless "
                                 "a spamd already answers there); set false to use a spamd of "
                                 "your own.")
    spamd_timeout: float = Field(15.0, description="Seconds to wait for spamd's verdict.")
    caniemail_data: Path = Field(
        Path("~/.cache/pat/caniemail/node_modules/caniemail/data/caniemail.json").expanduser(),
        description="caniemail.json of the npm package caniemail, which `make caniemail` "
        "installs into ~/.cache/pat/caniemail.")
    link_check_network: bool = Field(False, description="Request every link and image URL and "
                                     "report its HTTP status.")
    link_check_allow_private: bool = Field(False, description="Let the link check request URLs "
                                           "that resolve to private or loopback addresses.")
    link_check_concurrency: int = Field(8, description="Most link requests in flight at once.")
    link_check_timeout: float = Field(5.0, description="Seconds per link request.")
    link_check_max_links: int = Field(100, description="Most URLs checked per message; the "
                                      "rest are listed only.")

    @property
    def store_url(self) -> str:
        return self.database_url or f"sqlite+aiosqlite:///{self.data_dir / 'pat.db'}"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
