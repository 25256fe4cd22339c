#!/usr/bin/env bash
# deploy.sh — take a Google Cloud project from empty to both smtp-sender triggers running.
#
# Every step describes before it creates, so running it again converges instead of failing.
# `--dry-run` prints the gcloud commands (one per line, shell-quoted) and touches nothing.
# `--teardown` deletes what this script created. `replay-dead-letters` sends held dead letters
# back to the email topic. `--help` lists every variable.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

usage() {
  cat <<'EOF'
Usage: ./deploy.sh [--dry-run] [--teardown] [VAR=value | --var-name=value]...
       ./deploy.sh replay-dead-letters [--dry-run] [REPLAY_MAX=N] [VAR=value]...

Deploys smtp-sender (Cloud Run functions, gen2, python313) into one Google Cloud project:
an HTTP function, a Pub/Sub function with retries and a dead-letter topic, the SMTP secret,
a least-privilege runtime service account, log-based metrics and, on request, a Cloud
Scheduler job, a static egress IP, alerts and an outcome topic.
Safe to run again: every step checks before it creates.

Commands:
  (none)                deploy or update
  replay-dead-letters   pull up to REPLAY_MAX messages from DLQ_SUBSCRIPTION and publish each
                        again to TOPIC with an idempotency_key attribute; a message is acked
                        only after its publish succeeded (see the comment in deploy.sh for the
                        key it uses)

Options:
  --dry-run     print every gcloud command it would run, one per line; change nothing
                (needs no credentials; values only known at run time are shown as LOOKUP_*)
  --teardown    delete what deploy.sh created (functions, topics, scheduler job, secrets,
                service accounts, static egress, metrics, alert policies and the channels
                it made); APIs stay enabled
  -h, --help    this text

Every variable can be set in the environment, as VAR=value, or as --var-name=value
(e.g. --project=my-proj is PROJECT=my-proj).

Required:
  PROJECT                 Google Cloud project ID

Where and what:
  REGION                  region of the functions, scheduler job, Firestore (default us-central1)
  HTTP_FUNCTION           name of the HTTP function              (default smtp-sender-http)
  PUBSUB_FUNCTION         name of the Pub/Sub function           (default smtp-sender-pubsub)
  SERVICE_ACCOUNT_NAME    runtime service account ID              (default smtp-sender-runtime)
  TRIGGER_ACCOUNT_NAME    service account Eventarc uses to invoke the Pub/Sub function
                                                                  (default smtp-sender-trigger)
  RUNTIME                 Cloud Run functions runtime                (default python313)
  BUILD_SERVICE_ACCOUNT   optional build service account e-mail, for projects whose default
                          Cloud Build account lacks permissions (passed as --build-service-account)

SMTP credentials (Secret Manager):
  SMTP_SECRET             secret name holding the SMTP profile JSON  (default smtp-profile)
  SMTP_PROFILE_FILE       file with the profile JSON to store as a new secret version, or "-"
                          for stdin; the content never appears on a command line. A version is
                          added only when it differs from the latest one. Unset: keep versions.
  WEBHOOK_SECRET          optional secret name of a bearer/HMAC token for callers outside IAM
  WEBHOOK_SECRET_FILE     optional file (or "-") whose content becomes a WEBHOOK_SECRET version
  SECRET_LOCATION         a region (e.g. europe-west1): create both secrets as regional secrets
                          there; the functions get projects/P/locations/L/secrets/S
                                                                     (default: global secrets)
  DWD_SERVICE_ACCOUNT     service account e-mail a keyless Google profile signs as (oauth2 flow
                          google_service_account without "key"); the runtime account gets
                          roles/iam.serviceAccountTokenCreator on that account only. Found in
                          SMTP_PROFILE_FILE when that holds such a profile (only this e-mail is
                          read out of it; nothing else of the profile is ever printed)

Function configuration (become the function's environment; unset = the function's default):
  ALLOWED_RECIPIENTS      comma list of domains/addresses mail may go to
  ALLOWED_SENDERS         comma list of addresses allowed in "from"
  MAX_RECIPIENTS          to+cc+bcc limit
  MAX_MESSAGE_BYTES       request body / built message limit
  MAX_EVENT_AGE_S         Pub/Sub events older than this are dropped
  SMTP_TIMEOUT_S          per SMTP operation, seconds                (default 20)
  SEND_DEADLINE_S         the whole send (both attempts of a rotation retry), seconds
                                                                     (default 50)
  SMTP_PROFILE_CACHE_TTL_S  how long an instance caches the SMTP profile (function default 300)
  IDEMPOTENCY_TTL_S       how long a sent key is remembered          (function default 7 days)
  IDEMPOTENCY_LEASE_S     how long a claim blocks other deliveries   (function default
                          SEND_DEADLINE_S + 15)
  TEMPLATES_DIR           your own templates, a directory inside the upload (add it to
                          .gcloudignore's allow-list, e.g. `!/templates/`)
  ALERT_RECIPIENTS        comma list of addresses for Cloud Monitoring's Pub/Sub channel (and
                          for alert webhooks posted without ?to=)
  WEBHOOK_RETRY_WINDOW_S  an alert notification posted again within this time is a retry
                                                                     (function default 600)
  IDEMPOTENCY_STORE       memory | firestore                         (default memory)
  IDEMPOTENCY_COLLECTION  Firestore collection of the ledger (firestore only)
  FIRESTORE_LOCATION      location if the (default) Firestore database must be created
                          (default: REGION)
  SMTP_POOL_SIZE          SMTP sessions kept per instance and profile (0 = one per message)
  SMTP_POOL_IDLE_S        an idle pooled session older than this is closed
  SMTP_SESSION_MAX_MESSAGES  messages over one session before it is replaced
  MAX_BATCH               messages in one batch
  RESULTS_TOPIC           topic (bare name or projects/P/topics/T) for one outcome event per
                          finished delivery: created if missing, the runtime account may
                          publish to it, both functions get it

Sizing (see the comments in deploy.sh for why these defaults):
  MEMORY                  memory per instance                        (default 512Mi)
  CPU                     vCPUs per instance; concurrency > 1 needs 1 (default 1)
  CONCURRENCY             requests one instance serves at once       (default 4)
  MAX_INSTANCES           instance cap, so at most CONCURRENCY x MAX_INSTANCES SMTP sessions
                                                                     (default 5)
  FUNCTION_TIMEOUT        seconds; must exceed SEND_DEADLINE_S + 30 and be at most 540
                                                          (default SEND_DEADLINE_S + 60)

Pub/Sub:
  TOPIC                   topic the Pub/Sub function listens on      (default smtp-send)
  DLQ_TOPIC               dead-letter topic                          (default TOPIC-dead-letter)
  DLQ_SUBSCRIPTION        pull subscription keeping dead letters 7 days
                                                                     (default DLQ_TOPIC-hold)
  MAX_DELIVERY_ATTEMPTS   deliveries before a message is dead-lettered, 5..100 (default 10)
  MIN_RETRY_DELAY         first redelivery backoff                   (default 10s)
  MAX_RETRY_DELAY         longest redelivery backoff                 (default 600s)

Static egress IP (for SMTP relays that allow-list source addresses):
  EGRESS                  static = reserve a regional address and send all the functions'
                          egress through a VPC and Cloud NAT on it; the IP is printed
                                                                     (default: Google's pool)
  EGRESS_VPC              direct (Direct VPC egress; gcloud >= 558) | connector (a Serverless
                          VPC Access connector, 2-3 e2-micro instances that bill while idle)
                                                                     (default direct)
  EGRESS_NETWORK          VPC network, created if missing (default smtp-sender-egress; only
                          that default name is deleted by --teardown)
  EGRESS_SUBNET_RANGE     the subnet's range; a connector needs a /28
                                             (default 10.8.0.0/26, connector 10.8.0.0/28)

Metrics and alerts (Cloud Monitoring):
  METRICS                 true = log-based counters smtp_sender_{sent,partial,rejected,
                          transient,misconfigured}, labelled by trigger   (default true)
  ALERT_EMAIL             create an e-mail notification channel to this address and two alert
                          policies: SMTP misconfigured, dead letters waiting
  ALERT_CHANNEL           or use an existing channel (projects/P/notificationChannels/N)
  MONITORING_PUBSUB_CHANNEL  true = a Cloud Monitoring Pub/Sub notification channel on TOPIC
                          (its service agent may publish there), so alert policies you point at
                          it are mailed to ALERT_RECIPIENTS by the Pub/Sub function
                                                                     (default false)

Callers:
  INVOKERS                comma list of principals allowed to call the HTTP function; a bare
                          e-mail means serviceAccount:EMAIL (user:, group: prefixes kept)
  PUBLIC_HTTP             true = --allow-unauthenticated (needs WEBHOOK_SECRET: the token then
                          is the only check)                           (default false)

Schedule (optional; nothing is created unless SCHEDULE is set):
  SCHEDULE                cron expression, e.g. "0 8 * * 1-5"
  SCHEDULE_MESSAGE        the message JSON to publish (one line), or
  SCHEDULE_MESSAGE_FILE   a file holding it
  SCHEDULE_TIME_ZONE      tz database name                           (default Etc/UTC)
  SCHEDULER_JOB           job name                                   (default smtp-sender-schedule)

Teardown:
  KEEP_SECRETS            true = --teardown leaves the secrets in place (default false)

Replaying dead letters (replay-dead-letters):
  REPLAY_MAX              most messages one run replays, 1..1000       (default 100)
EOF
}

# ---------------------------------------------------------------- arguments and defaults

# Every variable --help documents; only these may be set with --var-name=value / VAR=value.
KNOWN_VARS=" PROJECT REGION HTTP_FUNCTION PUBSUB_FUNCTION SERVICE_ACCOUNT_NAME TRIGGER_ACCOUNT_NAME
 RUNTIME BUILD_SERVICE_ACCOUNT SMTP_SECRET SMTP_PROFILE_FILE WEBHOOK_SECRET WEBHOOK_SECRET_FILE
 SECRET_LOCATION DWD_SERVICE_ACCOUNT
 ALLOWED_RECIPIENTS ALLOWED_SENDERS MAX_RECIPIENTS MAX_MESSAGE_BYTES MAX_EVENT_AGE_S
 SMTP_TIMEOUT_S SEND_DEADLINE_S SMTP_PROFILE_CACHE_TTL_S IDEMPOTENCY_TTL_S IDEMPOTENCY_LEASE_S
 TEMPLATES_DIR IDEMPOTENCY_STORE IDEMPOTENCY_COLLECTION FIRESTORE_LOCATION MEMORY CPU
 SMTP_POOL_SIZE SMTP_POOL_IDLE_S SMTP_SESSION_MAX_MESSAGES MAX_BATCH RESULTS_TOPIC
 ALERT_RECIPIENTS EGRESS EGRESS_VPC EGRESS_NETWORK EGRESS_SUBNET_RANGE METRICS ALERT_EMAIL
 ALERT_CHANNEL MONITORING_PUBSUB_CHANNEL REPLAY_MAX
 CONCURRENCY MAX_INSTANCES FUNCTION_TIMEOUT TOPIC DLQ_TOPIC DLQ_SUBSCRIPTION
 MAX_DELIVERY_ATTEMPTS MIN_RETRY_DELAY MAX_RETRY_DELAY INVOKERS PUBLIC_HTTP SCHEDULE
 SCHEDULE_MESSAGE SCHEDULE_MESSAGE_FILE SCHEDULE_TIME_ZONE SCHEDULER_JOB KEEP_SECRETS
 WEBHOOK_RETRY_WINDOW_S "

die() {
  printf 'deploy.sh: error: %s\n' "$*" >&2
  exit 1
}

set_var() {
  local name=$1 value=$2
  [[ " ${KNOWN_VARS//$'\n'/ } " == *" $name "* ]] || die "unknown variable '$name' (see --help)"
  printf -v "$name" '%s' "$value"
}

DRY_RUN=false
TEARDOWN=false
REPLAY=false
while (($#)); do
  case $1 in
    --dry-run) DRY_RUN=true ;;
    --teardown) TEARDOWN=true ;;
    replay-dead-letters) REPLAY=true ;;
    -h | --help)
      usage
      exit 0
      ;;
    --*=*)
      name=${1%%=*}
      name=${name#--}
      name=${name//-/_}
      set_var "${name^^}" "${1#*=}"
      ;;
    [A-Z]*=*) set_var "${1%%=*}" "${1#*=}" ;;
    *) die "unexpected argument '$1' (see --help)" ;;
  esac
  shift
done

PROJECT=${PROJECT:-}
REGION=${REGION:-us-central1}
HTTP_FUNCTION=${HTTP_FUNCTION:-smtp-sender-http}
PUBSUB_FUNCTION=${PUBSUB_FUNCTION:-smtp-sender-pubsub}
SERVICE_ACCOUNT_NAME=${SERVICE_ACCOUNT_NAME:-smtp-sender-runtime}
TRIGGER_ACCOUNT_NAME=${TRIGGER_ACCOUNT_NAME:-smtp-sender-trigger}
# The newest GA Python runtime of Cloud Run functions (python314 is not everywhere yet).
RUNTIME=${RUNTIME:-python313}
BUILD_SERVICE_ACCOUNT=${BUILD_SERVICE_ACCOUNT:-}
SMTP_SECRET=${SMTP_SECRET:-smtp-profile}
SMTP_PROFILE_FILE=${SMTP_PROFILE_FILE:-}
WEBHOOK_SECRET=${WEBHOOK_SECRET:-}
WEBHOOK_SECRET_FILE=${WEBHOOK_SECRET_FILE:-}
SECRET_LOCATION=${SECRET_LOCATION:-}
DWD_SERVICE_ACCOUNT=${DWD_SERVICE_ACCOUNT:-}
ALLOWED_RECIPIENTS=${ALLOWED_RECIPIENTS:-}
ALLOWED_SENDERS=${ALLOWED_SENDERS:-}
MAX_RECIPIENTS=${MAX_RECIPIENTS:-}
MAX_MESSAGE_BYTES=${MAX_MESSAGE_BYTES:-}
MAX_EVENT_AGE_S=${MAX_EVENT_AGE_S:-}
SMTP_TIMEOUT_S=${SMTP_TIMEOUT_S:-20}
SEND_DEADLINE_S=${SEND_DEADLINE_S:-50}
SMTP_PROFILE_CACHE_TTL_S=${SMTP_PROFILE_CACHE_TTL_S:-}
IDEMPOTENCY_TTL_S=${IDEMPOTENCY_TTL_S:-}
IDEMPOTENCY_LEASE_S=${IDEMPOTENCY_LEASE_S:-}
TEMPLATES_DIR=${TEMPLATES_DIR:-}
WEBHOOK_RETRY_WINDOW_S=${WEBHOOK_RETRY_WINDOW_S:-}
IDEMPOTENCY_STORE=${IDEMPOTENCY_STORE:-memory}
IDEMPOTENCY_COLLECTION=${IDEMPOTENCY_COLLECTION:-}
FIRESTORE_LOCATION=${FIRESTORE_LOCATION:-$REGION}
SMTP_POOL_SIZE=${SMTP_POOL_SIZE:-}
SMTP_POOL_IDLE_S=${SMTP_POOL_IDLE_S:-}
SMTP_SESSION_MAX_MESSAGES=${SMTP_SESSION_MAX_MESSAGES:-}
MAX_BATCH=${MAX_BATCH:-}
RESULTS_TOPIC=${RESULTS_TOPIC:-}
ALERT_RECIPIENTS=${ALERT_RECIPIENTS:-}
EGRESS=${EGRESS:-}
EGRESS_VPC=${EGRESS_VPC:-direct}
EGRESS_NETWORK=${EGRESS_NETWORK:-smtp-sender-egress}
EGRESS_SUBNET_RANGE=${EGRESS_SUBNET_RANGE:-}
METRICS=${METRICS:-true}
ALERT_EMAIL=${ALERT_EMAIL:-}
ALERT_CHANNEL=${ALERT_CHANNEL:-}
MONITORING_PUBSUB_CHANNEL=${MONITORING_PUBSUB_CHANNEL:-false}
REPLAY_MAX=${REPLAY_MAX:-100}
# Sizing. The function holds one message in memory several times over while it decodes
# attachments and builds MIME (a 10 MiB request can mean ~60 MiB of working set), and the
# Python runtime with gRPC/Jinja2/pydantic loaded is ~120 MiB: 512Mi leaves room for
# CONCURRENCY such requests. Cloud Run only allows concurrency > 1 with a whole vCPU, hence
# CPU=1. Concurrency 4: a send is almost all waiting on the SMTP server, so one instance
# can overlap a few, and warm instances share the profile cache and in-memory ledger.
# MAX_INSTANCES=5 caps simultaneous SMTP sessions at 5 x 4 = 20 and caps cost if a caller
# floods the function; Pub/Sub simply redelivers what could not be placed. A provider's
# connection limit is per mailbox while the session pool's cap is per instance: Microsoft 365
# allows 3 connections per mailbox, so deploy M365 profiles with MAX_INSTANCES=1 (README).
# min-instances stays 0: nothing runs (or bills) idle.
MEMORY=${MEMORY:-512Mi}
CPU=${CPU:-1}
CONCURRENCY=${CONCURRENCY:-4}
MAX_INSTANCES=${MAX_INSTANCES:-5}
# Timeout. The function bounds a whole send (Secret Manager reads, connect, TLS, AUTH, every
# SMTP command, and the retry after a rotated password) by SEND_DEADLINE_S, with a watchdog
# that cuts off even a server dripping one byte at a time; each step is also bounded by
# SMTP_TIMEOUT_S. The function timeout adds 60 s for start-up and the idempotency store's
# calls (each bounded well under 20 s). The ceiling is 540 s because the Pub/Sub
# subscription's ack deadline is set to 600 s: a longer run would be redelivered while still
# sending, i.e. a second email.
FUNCTION_TIMEOUT=${FUNCTION_TIMEOUT:-}
TOPIC=${TOPIC:-smtp-send}
DLQ_TOPIC=${DLQ_TOPIC:-${TOPIC}-dead-letter}
DLQ_SUBSCRIPTION=${DLQ_SUBSCRIPTION:-${DLQ_TOPIC}-hold}
MAX_DELIVERY_ATTEMPTS=${MAX_DELIVERY_ATTEMPTS:-10}
MIN_RETRY_DELAY=${MIN_RETRY_DELAY:-10s}
MAX_RETRY_DELAY=${MAX_RETRY_DELAY:-600s}
INVOKERS=${INVOKERS:-}
PUBLIC_HTTP=${PUBLIC_HTTP:-false}
SCHEDULE=${SCHEDULE:-}
SCHEDULE_MESSAGE=${SCHEDULE_MESSAGE:-}
SCHEDULE_MESSAGE_FILE=${SCHEDULE_MESSAGE_FILE:-}
SCHEDULE_TIME_ZONE=${SCHEDULE_TIME_ZONE:-Etc/UTC}
SCHEDULER_JOB=${SCHEDULER_JOB:-smtp-sender-schedule}
KEEP_SECRETS=${KEEP_SECRETS:-false}

# ---------------------------------------------------------------- validation

is_uint() { [[ $1 =~ ^[0-9]+$ ]]; }
is_bool() { [[ $1 == true || $1 == false ]]; }

[[ -n $PROJECT ]] || die "PROJECT is required (e.g. ./deploy.sh PROJECT=my-project)"
[[ $PROJECT =~ ^[a-z][a-z0-9-]{4,28}[a-z0-9]$ ]] || die "PROJECT '$PROJECT' is not a project ID"
[[ $REGION =~ ^[a-z]+-[a-z]+[0-9]+$ ]] || die "REGION '$REGION' is not a region"
for v in SERVICE_ACCOUNT_NAME TRIGGER_ACCOUNT_NAME; do
  [[ ${!v} =~ ^[a-z][a-z0-9-]{4,28}[a-z0-9]$ ]] || die "$v '${!v}' must be 6-30 of [a-z0-9-]"
done
for v in HTTP_FUNCTION PUBSUB_FUNCTION SCHEDULER_JOB; do
  [[ ${!v} =~ ^[a-z][a-z0-9-]{0,61}[a-z0-9]$ ]] || die "$v '${!v}' must be [a-z0-9-], 2-63 chars"
done
for v in SMTP_SECRET WEBHOOK_SECRET TOPIC DLQ_TOPIC DLQ_SUBSCRIPTION; do
  [[ -z ${!v} || ${!v} =~ ^[A-Za-z][A-Za-z0-9_.~+%-]{0,254}$ ]] || die "$v '${!v}' is not a valid name"
done
for v in SMTP_TIMEOUT_S SEND_DEADLINE_S CONCURRENCY MAX_INSTANCES MAX_DELIVERY_ATTEMPTS; do
  if ! is_uint "${!v}" || ((${!v} == 0)); then die "$v must be a positive integer"; fi
done
for v in MAX_RECIPIENTS MAX_MESSAGE_BYTES MAX_EVENT_AGE_S FUNCTION_TIMEOUT \
  SMTP_PROFILE_CACHE_TTL_S IDEMPOTENCY_TTL_S IDEMPOTENCY_LEASE_S SMTP_POOL_SIZE SMTP_POOL_IDLE_S \
  SMTP_SESSION_MAX_MESSAGES MAX_BATCH WEBHOOK_RETRY_WINDOW_S; do
  [[ -z ${!v} ]] || is_uint "${!v}" || die "$v must be a whole number"
done
((MAX_DELIVERY_ATTEMPTS >= 5 && MAX_DELIVERY_ATTEMPTS <= 100)) ||
  die "MAX_DELIVERY_ATTEMPTS must be 5..100 (Pub/Sub's range)"
[[ $CPU =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "CPU must be a number of vCPUs, e.g. 1 or 0.5"
if ((CONCURRENCY > 1)) && [[ $CPU =~ ^0*(\.[0-9]*)?$ ]]; then
  die "CONCURRENCY > 1 needs CPU >= 1 (a Cloud Run rule); set CONCURRENCY=1 for a fractional CPU"
fi
for v in PUBLIC_HTTP KEEP_SECRETS METRICS MONITORING_PUBSUB_CHANNEL; do
  is_bool "${!v}" || die "$v must be true or false"
done
[[ $IDEMPOTENCY_STORE == memory || $IDEMPOTENCY_STORE == firestore ]] ||
  die "IDEMPOTENCY_STORE must be memory or firestore"
[[ $PUBLIC_HTTP == false || -n $WEBHOOK_SECRET ]] ||
  die "PUBLIC_HTTP=true needs WEBHOOK_SECRET: without it anyone on the internet could send mail"

((SMTP_TIMEOUT_S <= SEND_DEADLINE_S)) ||
  die "SMTP_TIMEOUT_S ($SMTP_TIMEOUT_S) must not exceed SEND_DEADLINE_S ($SEND_DEADLINE_S)"
SMTP_BUDGET_S=$((SEND_DEADLINE_S + 30))
FUNCTION_TIMEOUT=${FUNCTION_TIMEOUT:-$((SEND_DEADLINE_S + 60))}
((FUNCTION_TIMEOUT > SMTP_BUDGET_S)) ||
  die "FUNCTION_TIMEOUT ($FUNCTION_TIMEOUT s) must exceed SEND_DEADLINE_S + 30 = $SMTP_BUDGET_S s"
((FUNCTION_TIMEOUT <= 540)) ||
  die "FUNCTION_TIMEOUT must be at most 540 s (the Pub/Sub ack deadline is 600 s); lower SEND_DEADLINE_S"

check_data_file() { # a secret's source: stdin ("-") or a readable regular file
  local var=$1 file=${!1}
  [[ -z $file || $file == - || (-f $file && -r $file) ]] || die "$var: cannot read '$file'"
}
check_data_file SMTP_PROFILE_FILE
check_data_file WEBHOOK_SECRET_FILE
[[ $SMTP_PROFILE_FILE != - || $WEBHOOK_SECRET_FILE != - ]] ||
  die "only one of SMTP_PROFILE_FILE and WEBHOOK_SECRET_FILE can read stdin"
[[ -z $WEBHOOK_SECRET_FILE || -n $WEBHOOK_SECRET ]] || die "WEBHOOK_SECRET_FILE needs WEBHOOK_SECRET"

# One pattern for every service account e-mail deploy.sh is handed (user-managed, Compute or
# App Engine default accounts; also the keyless profile's account, below).
SA_EMAIL='^[a-z][a-z0-9-]{4,28}[a-z0-9]@[a-z][a-z0-9.-]*\.gserviceaccount\.com$'

# A keyless Google profile (oauth2 flow google_service_account with service_account and no
# key) has the function's own identity sign the JWT through the IAM Credentials API: the
# runtime account then needs roles/iam.serviceAccountTokenCreator on that one account. The
# profile is a secret: python3 reads it locally and prints the service_account e-mail and
# nothing else (no error text either, which could quote the file). A profile on stdin ("-")
# cannot be read twice; name the account with DWD_SERVICE_ACCOUNT then. "key": null is
# keyless, as the function reads it.
keyless_account_of() {
  python3 - "$1" "$SA_EMAIL" <<'PY' 2>/dev/null || true
import json
import re
import sys

try:
    with open(sys.argv[1], encoding="utf-8") as f:
        profile = json.load(f)
    oauth2 = profile.get("oauth2") if isinstance(profile, dict) else None
    if isinstance(oauth2, dict) and oauth2.get("flow") == "google_service_account":
        account = oauth2.get("service_account")
        if oauth2.get("key") is None and account is not None:
            # SA_EMAIL's anchors dropped: fullmatch anchors, and "$" would let a newline end it.
            pattern = sys.argv[2].removeprefix("^").removesuffix("$")
            ok = isinstance(account, str) and re.fullmatch(pattern, account)
            print(account if ok else "INVALID")
except Exception:
    pass
PY
}
DWD_TARGET=$DWD_SERVICE_ACCOUNT
if [[ -z $DWD_TARGET && -n $SMTP_PROFILE_FILE && $SMTP_PROFILE_FILE != - ]]; then
  command -v python3 >/dev/null ||
    die "python3 is needed to read SMTP_PROFILE_FILE's oauth2 settings (or set DWD_SERVICE_ACCOUNT)"
  DWD_TARGET=$(keyless_account_of "$SMTP_PROFILE_FILE")
  [[ $DWD_TARGET != INVALID ]] ||
    die "SMTP_PROFILE_FILE: oauth2.service_account is not a service account e-mail"
fi

# The runtime ID is passed to gcloud as is; only its shape is checked here.
[[ $RUNTIME =~ ^python3[0-9]+$ ]] || die "RUNTIME '$RUNTIME' is not a Python runtime ID (e.g. python313)"
[[ -z $SECRET_LOCATION || $SECRET_LOCATION =~ ^[a-z]+-[a-z]+[0-9]+$ ]] ||
  die "SECRET_LOCATION '$SECRET_LOCATION' is not a region (regional secrets live in one region)"

[[ -z $DWD_SERVICE_ACCOUNT || $DWD_SERVICE_ACCOUNT =~ $SA_EMAIL ]] ||
  die "DWD_SERVICE_ACCOUNT '$DWD_SERVICE_ACCOUNT' is not a service account e-mail"

# RESULTS_TOPIC: a bare name in this project or a full topic path (possibly another project).
if [[ -n $RESULTS_TOPIC && $RESULTS_TOPIC != projects/* ]]; then
  RESULTS_TOPIC="projects/$PROJECT/topics/$RESULTS_TOPIC"
fi
[[ -z $RESULTS_TOPIC || $RESULTS_TOPIC =~ ^projects/[a-z][a-z0-9-]{4,28}[a-z0-9]/topics/[A-Za-z][A-Za-z0-9_.~+%-]{2,254}$ ]] ||
  die "RESULTS_TOPIC must be a topic name or projects/P/topics/T"
[[ $ALERT_RECIPIENTS != *[$' \t\n;']* ]] || die "ALERT_RECIPIENTS is a comma list without spaces"
if $MONITORING_PUBSUB_CHANNEL; then
  [[ -n $ALERT_RECIPIENTS ]] ||
    die "MONITORING_PUBSUB_CHANNEL=true needs ALERT_RECIPIENTS (who gets Cloud Monitoring's notifications)"
fi

[[ -z $ALERT_EMAIL || -z $ALERT_CHANNEL ]] || die "set only one of ALERT_EMAIL and ALERT_CHANNEL"
[[ -z $ALERT_EMAIL || $ALERT_EMAIL =~ ^[^@[:space:]\"\',]+@[^@[:space:]\"\',]+\.[^@[:space:]\"\',]+$ ]] ||
  die "ALERT_EMAIL '$ALERT_EMAIL' is not an e-mail address"
[[ -z $ALERT_CHANNEL || $ALERT_CHANNEL =~ ^projects/[a-z][a-z0-9-]{4,28}[a-z0-9]/notificationChannels/[0-9]+$ ]] ||
  die "ALERT_CHANNEL must be projects/P/notificationChannels/N (gcloud beta monitoring channels list)"
if [[ -n $ALERT_EMAIL || -n $ALERT_CHANNEL ]] && ! $METRICS; then
  die "the alert policies watch the log-based metrics: ALERT_EMAIL/ALERT_CHANNEL need METRICS=true"
fi

case $EGRESS in
  "" | default) EGRESS= ;;
  static) ;;
  *) die "EGRESS must be static (or unset for Google's shared egress addresses)" ;;
esac
[[ $EGRESS_VPC == direct || $EGRESS_VPC == connector ]] || die "EGRESS_VPC must be direct or connector"
[[ $EGRESS_NETWORK =~ ^[a-z][a-z0-9-]{0,40}[a-z0-9]$ ]] ||
  die "EGRESS_NETWORK '$EGRESS_NETWORK' must be [a-z0-9-], at most 42 chars"
# Direct VPC egress takes Cloud Run's addresses from the subnet in blocks of 16 (a /26 gives
# room for MAX_INSTANCES well past 5 across revisions); a connector needs exactly a /28.
if [[ $EGRESS_VPC == connector ]]; then
  EGRESS_SUBNET_RANGE=${EGRESS_SUBNET_RANGE:-10.8.0.0/28}
  [[ $EGRESS_SUBNET_RANGE == */28 ]] || die "EGRESS_VPC=connector needs a /28 EGRESS_SUBNET_RANGE"
else
  EGRESS_SUBNET_RANGE=${EGRESS_SUBNET_RANGE:-10.8.0.0/26}
fi
[[ $EGRESS_SUBNET_RANGE =~ ^([0-9]{1,3}\.){3}[0-9]{1,3}/(2[0-9]|1[0-9])$ ]] ||
  die "EGRESS_SUBNET_RANGE '$EGRESS_SUBNET_RANGE' is not an IPv4 CIDR range (/10../29)"
EGRESS_SUBNET="${EGRESS_NETWORK}-${REGION}"
EGRESS_ROUTER="${EGRESS_NETWORK}-router"
EGRESS_NAT="${EGRESS_NETWORK}-nat"
EGRESS_ADDRESS="${EGRESS_NETWORK}-ip"
EGRESS_CONNECTOR="smtp-sender-egress" # connector names: at most 25 chars

if ! is_uint "$REPLAY_MAX" || ((REPLAY_MAX < 1 || REPLAY_MAX > 1000)); then
  die "REPLAY_MAX must be 1..1000"
fi
! $REPLAY || ! $TEARDOWN || die "replay-dead-letters and --teardown do not go together"

if [[ -n $SCHEDULE ]]; then
  [[ -n $SCHEDULE_MESSAGE || -n $SCHEDULE_MESSAGE_FILE ]] ||
    die "SCHEDULE needs SCHEDULE_MESSAGE or SCHEDULE_MESSAGE_FILE"
  [[ -z $SCHEDULE_MESSAGE || -z $SCHEDULE_MESSAGE_FILE ]] ||
    die "set only one of SCHEDULE_MESSAGE and SCHEDULE_MESSAGE_FILE"
  [[ $SCHEDULE_MESSAGE != *$'\n'* ]] || die "SCHEDULE_MESSAGE must be one line (or use SCHEDULE_MESSAGE_FILE)"
  [[ -z $SCHEDULE_MESSAGE_FILE || -r $SCHEDULE_MESSAGE_FILE ]] ||
    die "SCHEDULE_MESSAGE_FILE: cannot read '$SCHEDULE_MESSAGE_FILE'"
fi

# ---------------------------------------------------------------- command helpers

# Shell-quote a command on one line. Plain words stay bare; anything else is single-quoted
# (never bash's $'...' form), so the output is POSIX sh and Python's shlex alike.
SAFE_WORD='^[A-Za-z0-9_@%+=:,./-]+$'
quote_cmd() {
  local arg out=""
  for arg in "$@"; do
    if [[ $arg =~ $SAFE_WORD ]]; then
      out+="$arg "
    else
      out+="'${arg//\'/\'\\\'\'}' "
    fi
  done
  printf '%s\n' "${out% }"
}

# Notes: part of the dry-run listing (as # comments), progress on stderr for a real run.
note() {
  if $DRY_RUN; then printf '# %s\n' "$*"; else printf '==> %s\n' "$*" >&2; fi
}

# Run a command that changes something (printed instead under --dry-run).
run() {
  if $DRY_RUN; then
    quote_cmd "$@"
    return 0
  fi
  printf '+ %s' "$(quote_cmd "$@")" >&2
  printf '\n' >&2
  "$@"
}

# IAM bindings right after creating a service account can fail for a few seconds until the
# account propagates: retry those a few times rather than ask the user to re-run.
run_retry() {
  local attempt
  if $DRY_RUN; then
    run "$@"
    return 0
  fi
  for attempt in 1 2 3 4 5; do
    run "$@" >/dev/null && return 0
    ((attempt < 5)) || break
    note "retrying in $((attempt * 5)) s (new accounts take a moment to propagate)"
    sleep $((attempt * 5))
  done
  die "failed: $(quote_cmd "$@")"
}

# Does a resource exist? Runs a describe. Under --dry-run the describe is printed and the
# answer is "no", so the listing shows the create that a first run performs.
exists() {
  if $DRY_RUN; then
    quote_cmd "$@"
    return 1
  fi
  "$@" >/dev/null 2>&1
}

# For teardown: does a resource exist? Under --dry-run the describe is printed and the answer
# is "yes", so the listing shows every delete a teardown may perform.
present() {
  exists "$@" || $DRY_RUN
}

# Read one value with a gcloud lookup into the variable named $1. Under --dry-run the
# lookup is printed and the variable gets the marked placeholder $2.
lookup() {
  local var=$1 placeholder=$2 value
  shift 2
  if $DRY_RUN; then
    quote_cmd "$@"
    printf -v "$var" '%s' "$placeholder"
    return 0
  fi
  value=$("$@")
  [[ -n $value ]] || die "lookup returned nothing: $(quote_cmd "$@")"
  printf -v "$var" '%s' "$value"
}

# Read the names a gcloud list prints (one per line, possibly none) into the array named $1.
# Under --dry-run the list is printed and the array holds the placeholder $2 (the listing
# then shows the create or delete a real run performs).
find_names() {
  local -n _names=$1
  local placeholder=$2
  shift 2
  local out line
  _names=()
  if $DRY_RUN; then
    quote_cmd "$@"
    [[ -z $placeholder ]] || _names=("$placeholder")
    return 0
  fi
  out=$("$@") || return 1
  while IFS= read -r line; do [[ -z $line ]] || _names+=("$line"); done <<<"$out"
}

# Escape a string for a JSON document built here (inputs are validated names and addresses).
json_str() {
  local s=${1//\\/\\\\}
  printf '"%s"' "${s//\"/\\\"}"
}

P=(--project="$PROJECT")
RUNTIME_SA="${SERVICE_ACCOUNT_NAME}@${PROJECT}.iam.gserviceaccount.com"
TRIGGER_SA="${TRIGGER_ACCOUNT_NAME}@${PROJECT}.iam.gserviceaccount.com"
# Regional secrets (SECRET_LOCATION) take --location on every `gcloud secrets` command.
SECRET_LOC=()
[[ -z $SECRET_LOCATION ]] || SECRET_LOC=(--location="$SECRET_LOCATION")
METRIC_NAMES=(sent partial rejected transient misconfigured)
ALERT_POLICY_MISCONFIGURED="smtp-sender: SMTP misconfigured"
ALERT_POLICY_DEAD_LETTERS="smtp-sender: dead letters waiting"
ALERT_CHANNEL_DISPLAY="smtp-sender alerts"
PUBSUB_CHANNEL_DISPLAY="smtp-sender email topic $TOPIC"
PROJECT_NUMBER=

if ! $DRY_RUN; then
  command -v gcloud >/dev/null || die "gcloud not found: install the Google Cloud CLI"
  # Never stop at an interactive prompt: a prompt reading stdin could eat SMTP_PROFILE_FILE=-.
  export CLOUDSDK_CORE_DISABLE_PROMPTS=1
  # Direct VPC egress for functions came to gcloud in release 558 (earlier ones reject its
  # flags): ask this gcloud before anything is created rather than fail at the deploy.
  if ! $TEARDOWN && ! $REPLAY && [[ $EGRESS == static && $EGRESS_VPC == direct ]] &&
    ! gcloud functions deploy --help 2>/dev/null | grep -q -- --direct-vpc-egress; then
    die "this gcloud has no Direct VPC egress for functions (needs 558 or later): update it," \
      "or set EGRESS_VPC=connector"
  fi
fi

# ---------------------------------------------------------------- steps

enable_apis() {
  local apis=(cloudfunctions.googleapis.com run.googleapis.com cloudbuild.googleapis.com
    artifactregistry.googleapis.com eventarc.googleapis.com pubsub.googleapis.com
    secretmanager.googleapis.com iam.googleapis.com)
  [[ -z $SCHEDULE ]] || apis+=(cloudscheduler.googleapis.com)
  [[ $IDEMPOTENCY_STORE != firestore ]] || apis+=(firestore.googleapis.com)
  [[ -z $DWD_TARGET ]] || apis+=(iamcredentials.googleapis.com)
  [[ $EGRESS != static ]] || apis+=(compute.googleapis.com)
  [[ $EGRESS != static || $EGRESS_VPC != connector ]] || apis+=(vpcaccess.googleapis.com)
  ! $METRICS || apis+=(logging.googleapis.com)
  if [[ -n $ALERT_EMAIL || -n $ALERT_CHANNEL ]] || $MONITORING_PUBSUB_CHANNEL; then
    apis+=(monitoring.googleapis.com)
  fi
  note "step 1: enable the APIs (enabling an enabled API is a no-op)"
  run gcloud services enable "${apis[@]}" "${P[@]}"
}

ensure_service_account() {
  local name=$1 email=$2 display=$3
  if ! exists gcloud iam service-accounts describe "$email" "${P[@]}"; then
    run gcloud iam service-accounts create "$name" --display-name="$display" "${P[@]}"
  fi
}

service_accounts() {
  note "step 2: service accounts with no project roles (each gets access to single resources)"
  ensure_service_account "$SERVICE_ACCOUNT_NAME" "$RUNTIME_SA" "smtp-sender runtime"
  ensure_service_account "$TRIGGER_ACCOUNT_NAME" "$TRIGGER_SA" "smtp-sender Pub/Sub trigger"
}

# The name the function reads a secret by: global or regional (SECRET_LOCATION).
secret_resource() {
  if [[ -n $SECRET_LOCATION ]]; then
    printf 'projects/%s/locations/%s/secrets/%s' "$PROJECT" "$SECRET_LOCATION" "$1"
  else
    printf 'projects/%s/secrets/%s' "$PROJECT" "$1"
  fi
}

# Create secret $1 if absent; add a version from file $2 ("-" = stdin) unless the latest
# version already holds the same bytes; let the runtime account read this secret only.
# With SECRET_LOCATION the secret is regional: its payload is stored (and only served) in
# that region, and replication policies do not apply.
ensure_secret() {
  local name=$1 file=$2 where=(--replication-policy=automatic)
  [[ -z $SECRET_LOCATION ]] || where=("${SECRET_LOC[@]}")
  if ! exists gcloud secrets describe "$name" "${SECRET_LOC[@]}" "${P[@]}"; then
    run gcloud secrets create "$name" "${where[@]}" "${P[@]}"
  fi
  if [[ -n $file ]]; then
    # The payload travels file -> gcloud by --data-file: never argv, never the process list.
    # A regular file is compared with the latest version (bytes go through a pipe to cmp, and
    # nowhere else) so re-running does not pile up identical versions.
    if [[ $file != - ]] && ! $DRY_RUN &&
      gcloud secrets versions access latest --secret="$name" "${SECRET_LOC[@]}" "${P[@]}" \
        2>/dev/null | cmp -s - "$file"; then
      note "secret $name: latest version already matches $file"
    else
      if $DRY_RUN && [[ $file != - ]]; then
        note "(a real run first compares the latest version with the file, through cmp only)"
        quote_cmd gcloud secrets versions access latest --secret="$name" "${SECRET_LOC[@]}" \
          "${P[@]}"
      fi
      run gcloud secrets versions add "$name" --data-file="$file" "${SECRET_LOC[@]}" "${P[@]}"
    fi
  fi
  run_retry gcloud secrets add-iam-policy-binding "$name" "${SECRET_LOC[@]}" \
    --member="serviceAccount:$RUNTIME_SA" --role=roles/secretmanager.secretAccessor "${P[@]}"
}

secrets() {
  local scope=global
  [[ -z $SECRET_LOCATION ]] || scope="regional, $SECRET_LOCATION"
  note "step 3: secret $SMTP_SECRET ($scope; accessor for the runtime account on this secret only)"
  ensure_secret "$SMTP_SECRET" "$SMTP_PROFILE_FILE"
  if [[ -n $WEBHOOK_SECRET ]]; then
    note "step 3b: webhook token secret $WEBHOOK_SECRET ($scope)"
    ensure_secret "$WEBHOOK_SECRET" "$WEBHOOK_SECRET_FILE"
  fi
}

firestore() {
  [[ $IDEMPOTENCY_STORE == firestore ]] || return 0
  note "step 3c: Firestore idempotency ledger (database + roles/datastore.user for the runtime account)"
  if ! exists gcloud firestore databases describe --database='(default)' "${P[@]}"; then
    run gcloud firestore databases create --database='(default)' \
      --location="$FIRESTORE_LOCATION" --type=firestore-native "${P[@]}"
  fi
  # Firestore grants are project-wide (there is no per-collection IAM); datastore.user is
  # the narrowest role that reads and writes documents.
  run_retry gcloud projects add-iam-policy-binding "$PROJECT" \
    --member="serviceAccount:$RUNTIME_SA" --role=roles/datastore.user --condition=None
  # Ledger records carry expire_at; this TTL policy lets Firestore delete them when it passes
  # (idempotent: enabling an enabled policy is a no-op).
  run gcloud firestore fields ttls update expire_at \
    --collection-group="${IDEMPOTENCY_COLLECTION:-smtp_sender_idempotency}" \
    --database='(default)' --enable-ttl --async "${P[@]}"
}

keyless_google() {
  [[ -n $DWD_TARGET ]] || return 0
  note "step 3d: keyless Google sign-in: the runtime account may sign JWTs as $DWD_TARGET (that account only)"
  # Token Creator on the one account carries iam.serviceAccounts.signJwt, which the
  # google_service_account flow without a key needs; no project-wide role, no key file.
  run_retry gcloud iam service-accounts add-iam-policy-binding "$DWD_TARGET" \
    --member="serviceAccount:$RUNTIME_SA" --role=roles/iam.serviceAccountTokenCreator "${P[@]}"
}

results_topic() {
  [[ -n $RESULTS_TOPIC ]] || return 0
  note "step 3e: outcome events topic $RESULTS_TOPIC (the runtime account may publish to it)"
  if ! exists gcloud pubsub topics describe "$RESULTS_TOPIC" "${P[@]}"; then
    run gcloud pubsub topics create "$RESULTS_TOPIC" "${P[@]}"
  fi
  run_retry gcloud pubsub topics add-iam-policy-binding "$RESULTS_TOPIC" \
    --member="serviceAccount:$RUNTIME_SA" --role=roles/pubsub.publisher "${P[@]}"
}

# EGRESS=static. SMTP relays that allow-list by source address (Google Workspace's SMTP relay,
# company relays) need one fixed address, which Cloud Run's shared egress is not. The
# functions' traffic goes into a VPC subnet and out through Cloud NAT on a reserved regional
# address. Direct VPC egress (default) puts the instances on the subnet itself: no idle cost,
# no extra hop; gcloud supports it for functions since release 558. A Serverless VPC Access
# connector (EGRESS_VPC=connector) works with older gcloud but runs 2-3 e2-micro instances
# around the clock. Either way --*egress*=all sends everything (SMTP, the IdP, Google APIs)
# through the VPC; Private Google Access keeps Google API calls off the NAT.
egress() {
  [[ $EGRESS == static ]] || return 0
  local R=(--region="$REGION")
  note "step 3f: static egress IP: $EGRESS_NETWORK, subnet $EGRESS_SUBNET_RANGE, address" \
    "$EGRESS_ADDRESS, Cloud Router + NAT ($EGRESS_VPC)"
  if ! exists gcloud compute networks describe "$EGRESS_NETWORK" "${P[@]}"; then
    run gcloud compute networks create "$EGRESS_NETWORK" --subnet-mode=custom "${P[@]}"
  fi
  if ! exists gcloud compute networks subnets describe "$EGRESS_SUBNET" "${R[@]}" "${P[@]}"; then
    run gcloud compute networks subnets create "$EGRESS_SUBNET" --network="$EGRESS_NETWORK" \
      "${R[@]}" --range="$EGRESS_SUBNET_RANGE" --enable-private-ip-google-access "${P[@]}"
  fi
  if ! exists gcloud compute addresses describe "$EGRESS_ADDRESS" "${R[@]}" "${P[@]}"; then
    run gcloud compute addresses create "$EGRESS_ADDRESS" "${R[@]}" \
      --description="smtp-sender egress (allow-listed at the SMTP relay)" "${P[@]}"
  fi
  if ! exists gcloud compute routers describe "$EGRESS_ROUTER" "${R[@]}" "${P[@]}"; then
    run gcloud compute routers create "$EGRESS_ROUTER" --network="$EGRESS_NETWORK" "${R[@]}" \
      "${P[@]}"
  fi
  # NAT only for this subnet, only from the reserved address (no auto-allocated extras).
  if ! exists gcloud compute routers nats describe "$EGRESS_NAT" --router="$EGRESS_ROUTER" \
    "${R[@]}" "${P[@]}"; then
    run gcloud compute routers nats create "$EGRESS_NAT" --router="$EGRESS_ROUTER" "${R[@]}" \
      --nat-external-ip-pool="$EGRESS_ADDRESS" --nat-custom-subnet-ip-ranges="$EGRESS_SUBNET" \
      "${P[@]}"
  fi
  if [[ $EGRESS_VPC == connector ]] &&
    ! exists gcloud compute networks vpc-access connectors describe "$EGRESS_CONNECTOR" \
      "${R[@]}" "${P[@]}"; then
    run gcloud compute networks vpc-access connectors create "$EGRESS_CONNECTOR" "${R[@]}" \
      --subnet="$EGRESS_SUBNET" --min-instances=2 --max-instances=3 --machine-type=e2-micro \
      "${P[@]}"
  fi
}

# The functions' environment (both get the same), as one --set-env-vars value. The values are
# comma lists (ALLOWED_RECIPIENTS), so gcloud's alternate delimiter syntax (`gcloud topic
# escaping`) makes ';' the separator. --set-env-vars replaces
# the whole environment: what is not set here goes back to the function's default, so the
# deployment always matches the flags.
env_vars_flag() {
  local pairs=() v joined
  pairs+=("SMTP_SECRET=$(secret_resource "$SMTP_SECRET")")
  pairs+=("GOOGLE_CLOUD_PROJECT=$PROJECT" "SMTP_TIMEOUT_S=$SMTP_TIMEOUT_S")
  pairs+=("SEND_DEADLINE_S=$SEND_DEADLINE_S")
  pairs+=("IDEMPOTENCY_STORE=$IDEMPOTENCY_STORE")
  [[ -z $WEBHOOK_SECRET ]] || pairs+=("WEBHOOK_SECRET=$(secret_resource "$WEBHOOK_SECRET")")
  for v in ALLOWED_RECIPIENTS ALLOWED_SENDERS MAX_RECIPIENTS MAX_MESSAGE_BYTES \
    MAX_EVENT_AGE_S IDEMPOTENCY_COLLECTION SMTP_PROFILE_CACHE_TTL_S IDEMPOTENCY_TTL_S \
    IDEMPOTENCY_LEASE_S TEMPLATES_DIR SMTP_POOL_SIZE SMTP_POOL_IDLE_S SMTP_SESSION_MAX_MESSAGES \
    MAX_BATCH RESULTS_TOPIC WEBHOOK_RETRY_WINDOW_S ALERT_RECIPIENTS; do
    [[ -z ${!v} ]] || pairs+=("$v=${!v}")
  done
  for v in "${pairs[@]}"; do
    [[ $v != *';'* && $v != *$'\n'* ]] || die "${v%%=*} must not contain ';' or a newline"
  done
  joined=$(printf ';%s' "${pairs[@]}")
  printf -- '--set-env-vars=^;^%s' "${joined#;}"
}

# Flags both functions share.
common_deploy_flags() {
  COMMON=(--gen2 --runtime="$RUNTIME" --region="$REGION" "${P[@]}" --source="$SCRIPT_DIR"
    --service-account="$RUNTIME_SA" --memory="$MEMORY" --cpu="$CPU"
    --concurrency="$CONCURRENCY" --max-instances="$MAX_INSTANCES" --min-instances=0
    --timeout="${FUNCTION_TIMEOUT}s")
  [[ -z $BUILD_SERVICE_ACCOUNT ]] ||
    COMMON+=(--build-service-account="projects/$PROJECT/serviceAccounts/$BUILD_SERVICE_ACCOUNT")
  if [[ $EGRESS == static && $EGRESS_VPC == direct ]]; then
    COMMON+=(--network="$EGRESS_NETWORK" --subnet="$EGRESS_SUBNET" --direct-vpc-egress=all)
  elif [[ $EGRESS == static ]]; then
    COMMON+=(--vpc-connector="projects/$PROJECT/locations/$REGION/connectors/$EGRESS_CONNECTOR"
      --egress-settings=all)
  fi
}

deploy_http() {
  local auth=--no-allow-unauthenticated
  $PUBLIC_HTTP && auth=--allow-unauthenticated
  note "step 4: HTTP function $HTTP_FUNCTION ($auth)"
  run gcloud functions deploy "$HTTP_FUNCTION" "${COMMON[@]}" "$(env_vars_flag)" \
    --entry-point=send_http --trigger-http "$auth"
}

ensure_topic() {
  if ! exists gcloud pubsub topics describe "$1" "${P[@]}"; then
    run gcloud pubsub topics create "$1" "${P[@]}"
  fi
}

# The project number (service agents are named by it), looked up once per run.
project_number() {
  [[ -n $PROJECT_NUMBER ]] ||
    lookup PROJECT_NUMBER LOOKUP_PROJECT_NUMBER gcloud projects describe "$PROJECT" \
      --format='value(projectNumber)'
}

deploy_pubsub() {
  local trigger subscription agent
  note "step 5: topics $TOPIC + $DLQ_TOPIC, Pub/Sub function $PUBSUB_FUNCTION, dead-lettering"
  ensure_topic "$TOPIC"
  ensure_topic "$DLQ_TOPIC"
  # A topic drops messages that no subscription holds: without this one, dead letters vanish.
  # Never expires; keeps dead letters 7 days (Pub/Sub's maximum) for inspection or replay.
  if ! exists gcloud pubsub subscriptions describe "$DLQ_SUBSCRIPTION" "${P[@]}"; then
    run gcloud pubsub subscriptions create "$DLQ_SUBSCRIPTION" --topic="$DLQ_TOPIC" \
      --message-retention-duration=7d --expiration-period=never "${P[@]}"
  fi
  # --retry: transient failures raise and Pub/Sub redelivers (PRODUCT.md). Ingress
  # internal-only: Eventarc's push is internal traffic; nobody else needs to reach it.
  run gcloud functions deploy "$PUBSUB_FUNCTION" "${COMMON[@]}" "$(env_vars_flag)" \
    --entry-point=send_pubsub --trigger-topic="$TOPIC" --retry \
    --trigger-service-account="$TRIGGER_SA" --ingress-settings=internal-only
  run_retry gcloud functions add-invoker-policy-binding "$PUBSUB_FUNCTION" \
    --region="$REGION" --member="serviceAccount:$TRIGGER_SA" "${P[@]}"

  # Eventarc owns the push subscription; find it through the trigger and add the dead-letter
  # policy and a retry backoff (so a struggling SMTP provider is not hammered).
  lookup trigger LOOKUP_TRIGGER_NAME gcloud functions describe "$PUBSUB_FUNCTION" \
    --region="$REGION" "${P[@]}" --format='value(eventTrigger.trigger)'
  lookup subscription LOOKUP_SUBSCRIPTION_NAME gcloud eventarc triggers describe "$trigger" \
    --location="$REGION" "${P[@]}" --format='value(transport.pubsub.subscription)'
  run gcloud pubsub subscriptions update "$subscription" "${P[@]}" \
    --dead-letter-topic="$DLQ_TOPIC" --max-delivery-attempts="$MAX_DELIVERY_ATTEMPTS" \
    --min-retry-delay="$MIN_RETRY_DELAY" --max-retry-delay="$MAX_RETRY_DELAY" --ack-deadline=600
  # Dead-lettering is done by the Pub/Sub service agent: it must publish to the DLQ topic and
  # acknowledge (subscribe) on the source subscription.
  project_number
  agent="serviceAccount:service-${PROJECT_NUMBER}@gcp-sa-pubsub.iam.gserviceaccount.com"
  run_retry gcloud pubsub topics add-iam-policy-binding "$DLQ_TOPIC" \
    --member="$agent" --role=roles/pubsub.publisher "${P[@]}"
  run_retry gcloud pubsub subscriptions add-iam-policy-binding "$subscription" \
    --member="$agent" --role=roles/pubsub.subscriber "${P[@]}"
}

# Cloud Monitoring's Pub/Sub notification channel on the email topic: alert policies that use
# it publish their incident JSON there, and the Pub/Sub function mails it to ALERT_RECIPIENTS.
# Monitoring publishes as its notification service agent, which needs roles/pubsub.publisher
# on the topic; the agent exists once the project has a Pub/Sub channel, so the channel comes
# first and the grant is retried while the agent propagates.
monitoring_pubsub_channel() {
  $MONITORING_PUBSUB_CHANNEL || return 0
  local channels topic="projects/$PROJECT/topics/$TOPIC" agent
  note "step 5b: Cloud Monitoring Pub/Sub notification channel on $TOPIC -> $ALERT_RECIPIENTS"
  find_names channels "" gcloud beta monitoring channels list "${P[@]}" \
    --filter="type=\"pubsub\" AND labels.topic=\"$topic\"" --format='value(name)' ||
    die "could not list notification channels (is the Monitoring API enabled yet? run again)"
  if ((${#channels[@]} == 0)); then
    run gcloud beta monitoring channels create --type=pubsub \
      --display-name="$PUBSUB_CHANNEL_DISPLAY" --channel-labels="topic=$topic" "${P[@]}"
  fi
  project_number
  agent="serviceAccount:service-${PROJECT_NUMBER}@gcp-sa-monitoring-notification.iam.gserviceaccount.com"
  run_retry gcloud pubsub topics add-iam-policy-binding "$TOPIC" \
    --member="$agent" --role=roles/pubsub.publisher "${P[@]}"
}

schedule() {
  [[ -n $SCHEDULE ]] || return 0
  local body verb=create
  note "step 6: Cloud Scheduler job $SCHEDULER_JOB ($SCHEDULE, $SCHEDULE_TIME_ZONE) -> $TOPIC"
  if [[ -n $SCHEDULE_MESSAGE_FILE ]]; then
    body=(--message-body-from-file="$SCHEDULE_MESSAGE_FILE")
  else
    body=(--message-body="$SCHEDULE_MESSAGE")
  fi
  exists gcloud scheduler jobs describe "$SCHEDULER_JOB" --location="$REGION" "${P[@]}" &&
    verb=update
  run gcloud scheduler jobs "$verb" pubsub "$SCHEDULER_JOB" --location="$REGION" "${P[@]}" \
    --schedule="$SCHEDULE" --time-zone="$SCHEDULE_TIME_ZONE" \
    --topic="projects/$PROJECT/topics/$TOPIC" "${body[@]}"
}

invokers() {
  [[ -n $INVOKERS ]] || return 0
  local member members
  note "step 7: roles/run.invoker on $HTTP_FUNCTION for: $INVOKERS"
  IFS=, read -r -a members <<<"$INVOKERS"
  for member in "${members[@]}"; do
    member=${member// /}
    [[ -n $member ]] || continue
    [[ $member == *:* ]] || member="serviceAccount:$member"
    run_retry gcloud functions add-invoker-policy-binding "$HTTP_FUNCTION" \
      --region="$REGION" --member="$member" "${P[@]}"
  done
}

# Log-based metrics from the function's outcome lines (sender/logs.py): "email sent",
# "email partially sent", and "email not sent" with error rejected | unavailable |
# misconfigured; each counter carries the line's trigger (http | pubsub) as a label. Cloud Run
# keeps a JSON line's "message" as jsonPayload.message. The config goes to gcloud on stdin
# (--config-from-file=-); --dry-run shows it as the "# config:" line above the command.
metric_config() {
  local kind=$1 what filter
  filter="resource.type=\"cloud_run_revision\""
  filter+=" AND resource.labels.service_name=(\"$HTTP_FUNCTION\" OR \"$PUBSUB_FUNCTION\")"
  case $kind in
    sent) what='emails every recipient accepted' filter+=' AND jsonPayload.message="email sent"' ;;
    partial)
      what='emails some recipients refused'
      filter+=' AND jsonPayload.message="email partially sent"'
      ;;
    rejected | transient | misconfigured)
      local error=$kind
      [[ $kind != transient ]] || error=unavailable
      what="emails not sent: $kind"
      filter+=" AND jsonPayload.message=\"email not sent\" AND jsonPayload.error=\"$error\""
      ;;
  esac
  printf '{"description": %s, "filter": %s, ' "$(json_str "smtp-sender: $what, by trigger")" \
    "$(json_str "$filter")"
  printf '"metricDescriptor": {"metricKind": "DELTA", "valueType": "INT64", "unit": "1", '
  printf '"labels": [{"key": "trigger", "valueType": "STRING", "description": "http or pubsub"}]}, '
  printf '"labelExtractors": {"trigger": "EXTRACT(jsonPayload.trigger)"}}'
}

metrics() {
  $METRICS || return 0
  local kind name config verb
  note "step 8: log-based metrics smtp_sender_{${METRIC_NAMES[*]}} (by trigger)"
  for kind in "${METRIC_NAMES[@]}"; do
    name="smtp_sender_$kind"
    config=$(metric_config "$kind")
    verb=create
    exists gcloud logging metrics describe "$name" "${P[@]}" && verb=update
    if $DRY_RUN; then note "config: $config"; fi
    run gcloud logging metrics "$verb" "$name" --config-from-file=- "${P[@]}" <<<"$config"
  done
}

# One alert policy as JSON. Threshold conditions over 5-minute windows; a policy closes its
# incident by itself a day after the condition stops holding.
policy_json() {
  local display=$1 condition=$2 filter=$3 aligner=$4 doc=$5
  printf '{"displayName": %s, "combiner": "OR", ' "$(json_str "$display")"
  printf '"documentation": {"mimeType": "text/markdown", "content": %s}, ' "$(json_str "$doc")"
  printf '"conditions": [{"displayName": %s, "conditionThreshold": {"filter": %s, ' \
    "$(json_str "$condition")" "$(json_str "$filter")"
  printf '"aggregations": [{"alignmentPeriod": "300s", "perSeriesAligner": "%s", ' "$aligner"
  printf '"crossSeriesReducer": "REDUCE_SUM"}], "comparison": "COMPARISON_GT", '
  printf '"thresholdValue": 0, "duration": "0s", "trigger": {"count": 1}}}], '
  printf '"alertStrategy": {"autoClose": "86400s"}, "notificationChannels": [%s]}' \
    "$(json_str "$ALERT_TARGET")"
}

# Create or (same display name) update one alert policy.
ensure_policy() {
  local display=$1 json=$2 found
  find_names found "" gcloud alpha monitoring policies list "${P[@]}" \
    --filter="displayName=\"$display\"" --format='value(name)' ||
    die "could not list alert policies (is the Monitoring API enabled yet? run again)"
  if ((${#found[@]})); then
    run gcloud alpha monitoring policies update "${found[0]}" --policy="$json" "${P[@]}"
  else
    run gcloud alpha monitoring policies create --policy="$json" "${P[@]}"
  fi
}

# Two alerts watch the watcher: a misconfigured secret or login (every send fails until an
# operator acts) and dead letters held in DLQ_SUBSCRIPTION (mail that was given up on). They
# notify ALERT_EMAIL (a channel made here) or ALERT_CHANNEL, never the email topic itself: an
# alert about broken sending must not depend on the sending.
alerts() {
  [[ -n $ALERT_EMAIL || -n $ALERT_CHANNEL ]] || return 0
  local channels filter
  note "step 8b: alert policies (SMTP misconfigured, dead letters waiting) -> ${ALERT_EMAIL:-$ALERT_CHANNEL}"
  ALERT_TARGET=$ALERT_CHANNEL
  if [[ -n $ALERT_EMAIL ]]; then
    find_names channels "" gcloud beta monitoring channels list "${P[@]}" \
      --filter="type=\"email\" AND labels.email_address=\"$ALERT_EMAIL\"" \
      --format='value(name)' ||
      die "could not list notification channels (is the Monitoring API enabled yet? run again)"
    if ((${#channels[@]})); then
      ALERT_TARGET=${channels[0]}
    else
      # create prints the new channel's name (--format): both policies need it.
      local create=(gcloud beta monitoring channels create --type=email
        --display-name="$ALERT_CHANNEL_DISPLAY: $ALERT_EMAIL"
        --channel-labels="email_address=$ALERT_EMAIL" "${P[@]}" --format='value(name)')
      if $DRY_RUN; then
        run "${create[@]}"
        ALERT_TARGET=LOOKUP_ALERT_CHANNEL
      else
        ALERT_TARGET=$(run "${create[@]}")
        [[ -n $ALERT_TARGET ]] || die "the new notification channel's name was not returned"
      fi
    fi
  fi
  filter="metric.type=\"logging.googleapis.com/user/smtp_sender_misconfigured\""
  filter+=" AND resource.type=\"cloud_run_revision\""
  ensure_policy "$ALERT_POLICY_MISCONFIGURED" "$(policy_json "$ALERT_POLICY_MISCONFIGURED" \
    "misconfiguration errors logged" "$filter" ALIGN_DELTA \
    "smtp-sender logged \"email not sent\" with error \"misconfigured\": the SMTP secret is missing, unreadable or malformed, or the login keeps failing. Pub/Sub messages wait for redelivery. Check the function's ERROR lines and run \`python -m sender check\`.")"
  filter="metric.type=\"pubsub.googleapis.com/subscription/num_undelivered_messages\""
  filter+=" AND resource.type=\"pubsub_subscription\""
  filter+=" AND resource.labels.subscription_id=\"$DLQ_SUBSCRIPTION\""
  ensure_policy "$ALERT_POLICY_DEAD_LETTERS" "$(policy_json "$ALERT_POLICY_DEAD_LETTERS" \
    "messages held in $DLQ_SUBSCRIPTION" "$filter" ALIGN_MAX \
    "Messages reached the dead-letter topic $DLQ_TOPIC: delivery was given up after $MAX_DELIVERY_ATTEMPTS attempts. Fix the cause, then run \`./deploy.sh replay-dead-letters PROJECT=$PROJECT\`; the incident closes when $DLQ_SUBSCRIPTION is empty.")"
}

summary() {
  local url example ip
  note "step 9: how to call it"
  lookup url LOOKUP_HTTP_URL gcloud functions describe "$HTTP_FUNCTION" --region="$REGION" \
    "${P[@]}" --format='value(serviceConfig.uri)'
  if [[ $EGRESS == static ]]; then
    lookup ip LOOKUP_EGRESS_IP gcloud compute addresses describe "$EGRESS_ADDRESS" \
      --region="$REGION" "${P[@]}" --format='value(address)'
  fi
  example='{"to": "you@example.com", "subject": "smtp-sender works", "text": "Hello from smtp-sender."}'
  {
    printf '# HTTP URL: %s\n' "$url"
    printf '# Topic:    projects/%s/topics/%s (dead letters: %s, held in %s)\n' \
      "$PROJECT" "$TOPIC" "$DLQ_TOPIC" "$DLQ_SUBSCRIPTION"
    [[ $EGRESS != static ]] ||
      printf '# Static egress IP (allow-list it at your SMTP relay): %s\n' "$ip"
    [[ -z $RESULTS_TOPIC ]] || printf '# Outcome events: %s\n' "$RESULTS_TOPIC"
    printf '# Try it (as a principal with run.invoker):\n'
    printf "curl -sS -X POST %s -H \"Authorization: Bearer \$(gcloud auth print-identity-token)\"" "$url"
    printf " -H 'Content-Type: application/json' -d %s\n" "$(quote_cmd "$example")"
    quote_cmd gcloud pubsub topics publish "$TOPIC" "${P[@]}" --message="$example"
  }
}

# ---------------------------------------------------------------- replay-dead-letters

# Republish held dead letters to TOPIC so the Pub/Sub function tries them again, without
# sending anything twice.
#
# The key. Pub/Sub does not forward a dead letter: it wraps the original in a NEW message (new
# message id) on the dead-letter topic, keeping data, attributes and ordering key and adding
# CloudPubSubDeadLetterSource{DeliveryCount,Subscription,SubscriptionProject,TopicPublishTime}.
# The original message id (the CloudEvent id the function keyed its ledger by) is not among
# them, so the replay sets the attribute idempotency_key (the function takes it as its key,
# same namespace as event ids) to the most stable identifier there is:
#   1. the message's own idempotency_key attribute, when it has one (set by the publisher, or
#      by an earlier replay): the exact key the original deliveries used, so the ledger
#      answers duplicate for what was sent and sends only what is still owed;
#   2. otherwise "dead-letter:" + sha256 of the original message — its publish time (from
#      CloudPubSubDeadLetterSourceTopicPublishTime, as epoch milliseconds), data and
#      attributes (canonical JSON, Pub/Sub's own CloudPubSubDeadLetter* attributes left out).
#      Every copy of one original (Pub/Sub may dead-letter a message more than once) and
#      every rerun of the replay get the same key, so a replay never sends one message twice;
#      it cannot match the ledger records of the original deliveries, which were keyed by
#      the lost message id (publishers that set idempotency_key themselves get case 1).
#   3. without that attribute (not a dead letter): "dead-letter-message:" + the message id.
# The republished message carries the data and the original attributes (not the
# CloudPubSubDeadLetter* ones) plus idempotency_key. Its body goes to gcloud through a 0600
# --flags-file, never argv or the terminal. Each message is acked only after its publish
# succeeded; when a publish fails, that message and the rest of the batch are handed back at
# once (ack deadline 0, not acked) and the run stops.
REPLAY_BATCH=10

# Turn one `pull --format=json` answer ($1) into flags files in $2 (prefix $3) and print one
# line per message: ack id, flags file (or SKIP: data that is not UTF-8 text cannot go
# through gcloud's --message), dead letter's message id, key.
replay_prepare() {
  python3 - "$@" <<'PY'
import base64
import datetime
import hashlib
import json
import os
import sys

answer, out_dir, prefix = sys.argv[1:4]
with open(answer, encoding="utf-8") as f:
    text = f.read().strip()
received = json.loads(text) if text else []
DEAD_LETTER_ATTRIBUTE = "CloudPubSubDeadLetter"
for n, item in enumerate(received):
    ack_id = item["ackId"]
    message = item.get("message") or {}
    message_id = message.get("messageId", "")
    all_attributes = message.get("attributes") or {}
    attributes = {k: v for k, v in all_attributes.items() if not k.startswith(DEAD_LETTER_ATTRIBUTE)}
    data = message.get("data", "")
    try:
        body = base64.b64decode(data, validate=True).decode("utf-8")
    except ValueError:  # binascii.Error and UnicodeDecodeError both are
        print(f"{ack_id}\tSKIP\t{message_id}\t-")
        continue
    key = attributes.get("idempotency_key")
    published = all_attributes.get(DEAD_LETTER_ATTRIBUTE + "SourceTopicPublishTime")
    if not key and published:
        try:
            when = datetime.datetime.fromisoformat(published.replace("Z", "+00:00"))
            published_ms: object = round(when.timestamp() * 1000)
        except ValueError:
            published_ms = published
        canonical = json.dumps(
            {"attributes": attributes, "data": data, "publish_time_ms": published_ms},
            sort_keys=True,
            separators=(",", ":"),
            ensure_ascii=False,
        )
        key = "dead-letter:" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()
    elif not key:
        key = "dead-letter-message:" + message_id
    attributes["idempotency_key"] = key
    flags = {"--message": body, "--attribute": attributes}
    if message.get("orderingKey"):
        flags["--ordering-key"] = message["orderingKey"]
    path = os.path.join(out_dir, f"{prefix}-{n}.json")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(flags, f, ensure_ascii=False)
    print(f"{ack_id}\t{path}\t{message_id}\t{key}")
PY
}

# Hand messages back to the subscription at once (ack deadline 0): not acked, pullable again.
replay_release() {
  (($#)) || return 0
  local IFS=,
  run gcloud pubsub subscriptions modify-message-ack-deadline "$DLQ_SUBSCRIPTION" \
    --ack-ids="$*" --ack-deadline=0 "${P[@]}" >/dev/null ||
    note "could not hand back $# message(s); they return when their ack deadline passes"
}

replay_dead_letters() {
  local S=("$DLQ_SUBSCRIPTION") remaining=$REPLAY_MAX batch n=0 replayed=0 skipped=0 work
  local lines line ack file id key ack_ids i
  note "replay-dead-letters: up to $REPLAY_MAX messages from $DLQ_SUBSCRIPTION -> $TOPIC," \
    "each acked only after its publish succeeded"
  if $DRY_RUN; then
    batch=$((remaining < REPLAY_BATCH ? remaining : REPLAY_BATCH))
    quote_cmd gcloud pubsub subscriptions pull "${S[@]}" --limit="$batch" --format=json "${P[@]}"
    note "each pulled batch is kept from redelivery while it is replayed:"
    quote_cmd gcloud pubsub subscriptions modify-message-ack-deadline "${S[@]}" \
      --ack-ids=LOOKUP_ACK_IDS --ack-deadline=600 "${P[@]}"
    note "each message: data + attributes + idempotency_key (its own, else dead-letter:SHA256)" \
      "from a 0600 flags file, then its ack:"
    quote_cmd gcloud pubsub topics publish "$TOPIC" --flags-file=LOOKUP_MESSAGE_FLAGS_FILE \
      "${P[@]}"
    quote_cmd gcloud pubsub subscriptions ack "${S[@]}" --ack-ids=LOOKUP_ACK_ID "${P[@]}"
    note "a failed publish: that message and the rest of its batch are handed back, not acked:"
    quote_cmd gcloud pubsub subscriptions modify-message-ack-deadline "${S[@]}" \
      --ack-ids=LOOKUP_ACK_IDS --ack-deadline=0 "${P[@]}"
    return 0
  fi
  command -v python3 >/dev/null || die "replay-dead-letters needs python3"
  work=$(mktemp -d)
  # shellcheck disable=SC2064 # expand now: the directory is known here
  trap "rm -rf '$work'" EXIT
  while ((remaining > 0)); do
    batch=$((remaining < REPLAY_BATCH ? remaining : REPLAY_BATCH))
    gcloud pubsub subscriptions pull "${S[@]}" --limit="$batch" --format=json "${P[@]}" \
      >"$work/pull.json" || die "could not pull from $DLQ_SUBSCRIPTION"
    n=$((n + 1))
    mapfile -t lines < <(replay_prepare "$work/pull.json" "$work" "batch$n")
    rm -f "$work/pull.json" # it holds message bodies
    ((${#lines[@]})) || break
    ack_ids=()
    for line in "${lines[@]}"; do ack_ids+=("${line%%$'\t'*}"); done
    (
      IFS=,
      run gcloud pubsub subscriptions modify-message-ack-deadline "${S[@]}" \
        --ack-ids="${ack_ids[*]}" --ack-deadline=600 "${P[@]}" >/dev/null
    ) || note "could not extend the batch's ack deadline; a slow replay may see a message twice (keyed: no second email)"
    for i in "${!lines[@]}"; do
      IFS=$'\t' read -r ack file id key <<<"${lines[i]}"
      if [[ $file == SKIP ]]; then
        note "dead letter $id: data is not UTF-8 text; left in $DLQ_SUBSCRIPTION"
        skipped=$((skipped + 1))
        continue
      fi
      note "dead letter $id -> $TOPIC with idempotency_key=$key"
      if ! run gcloud pubsub topics publish "$TOPIC" --flags-file="$file" "${P[@]}" >/dev/null; then
        rm -f "$work"/batch*
        replay_release "${ack_ids[@]:i}"
        die "publishing dead letter $id failed: it and the $((${#lines[@]} - i - 1)) after it" \
          "stay in $DLQ_SUBSCRIPTION, not acked ($replayed replayed before it)"
      fi
      rm -f "$file"
      if run gcloud pubsub subscriptions ack "${S[@]}" --ack-ids="$ack" "${P[@]}" >/dev/null; then
        replayed=$((replayed + 1))
      else
        note "dead letter $id was published but not acked: a later replay publishes it again" \
          "with the same key (the function answers duplicate)"
      fi
    done
    remaining=$((remaining - ${#lines[@]}))
  done
  note "replayed $replayed dead letter(s); $skipped left in $DLQ_SUBSCRIPTION as not replayable"
}

# ---------------------------------------------------------------- teardown

teardown() {
  note "teardown: deleting what deploy.sh created in $PROJECT (APIs stay enabled)"
  local fn topic secret sa kind names name R=(--region="$REGION")
  # The scheduler job is looked for even without SCHEDULE: an earlier run may have made one.
  if present gcloud scheduler jobs describe "$SCHEDULER_JOB" --location="$REGION" "${P[@]}"; then
    run gcloud scheduler jobs delete "$SCHEDULER_JOB" --location="$REGION" "${P[@]}" --quiet
  fi
  # Deleting the Pub/Sub function also deletes its Eventarc trigger and push subscription.
  for fn in "$PUBSUB_FUNCTION" "$HTTP_FUNCTION"; do
    if present gcloud functions describe "$fn" --region="$REGION" "${P[@]}"; then
      run gcloud functions delete "$fn" --region="$REGION" "${P[@]}" --quiet
    fi
  done
  # Static egress, looked for even without EGRESS (the address and NAT bill while they exist),
  # after the functions that use it and in dependency order: connector, router (its NAT goes
  # with it), address, subnet, network.
  if present gcloud compute networks vpc-access connectors describe "$EGRESS_CONNECTOR" "${R[@]}" \
    "${P[@]}"; then
    run gcloud compute networks vpc-access connectors delete "$EGRESS_CONNECTOR" "${R[@]}" \
      "${P[@]}" --quiet
  fi
  if present gcloud compute routers describe "$EGRESS_ROUTER" "${R[@]}" "${P[@]}"; then
    run gcloud compute routers delete "$EGRESS_ROUTER" "${R[@]}" "${P[@]}" --quiet
  fi
  if present gcloud compute addresses describe "$EGRESS_ADDRESS" "${R[@]}" "${P[@]}"; then
    run gcloud compute addresses delete "$EGRESS_ADDRESS" "${R[@]}" "${P[@]}" --quiet
  fi
  # Cloud Run frees Direct VPC addresses in the subnet some time (up to hours) after the
  # functions are gone; until then the subnet cannot be deleted: say so, keep going.
  if present gcloud compute networks subnets describe "$EGRESS_SUBNET" "${R[@]}" "${P[@]}"; then
    run gcloud compute networks subnets delete "$EGRESS_SUBNET" "${R[@]}" "${P[@]}" --quiet ||
      note "subnet $EGRESS_SUBNET is still in use (Cloud Run releases its addresses" \
        "1-2 hours after the functions are deleted): run --teardown again later"
  fi
  if [[ $EGRESS_NETWORK == smtp-sender-egress ]] &&
    present gcloud compute networks describe "$EGRESS_NETWORK" "${P[@]}"; then
    run gcloud compute networks delete "$EGRESS_NETWORK" "${P[@]}" --quiet ||
      note "network $EGRESS_NETWORK still has a subnet: run --teardown again later"
  fi
  if present gcloud pubsub subscriptions describe "$DLQ_SUBSCRIPTION" "${P[@]}"; then
    run gcloud pubsub subscriptions delete "$DLQ_SUBSCRIPTION" "${P[@]}" --quiet
  fi
  for topic in "$TOPIC" "$DLQ_TOPIC" ${RESULTS_TOPIC:+"$RESULTS_TOPIC"}; do
    if present gcloud pubsub topics describe "$topic" "${P[@]}"; then
      run gcloud pubsub topics delete "$topic" "${P[@]}" --quiet
    fi
  done
  if ! $KEEP_SECRETS; then
    for secret in "$SMTP_SECRET" ${WEBHOOK_SECRET:+"$WEBHOOK_SECRET"}; do
      if present gcloud secrets describe "$secret" "${SECRET_LOC[@]}" "${P[@]}"; then
        run gcloud secrets delete "$secret" "${SECRET_LOC[@]}" "${P[@]}" --quiet
      fi
    done
  fi
  if [[ $IDEMPOTENCY_STORE == firestore ]]; then
    # The Firestore database is left alone (it may hold other data and cannot be recreated
    # under the same name for a while); only the runtime account's role goes.
    run gcloud projects remove-iam-policy-binding "$PROJECT" \
      --member="serviceAccount:$RUNTIME_SA" --role=roles/datastore.user --condition=None ||
      note "no datastore.user binding to remove"
  fi
  if [[ -n $DWD_TARGET ]]; then
    run gcloud iam service-accounts remove-iam-policy-binding "$DWD_TARGET" \
      --member="serviceAccount:$RUNTIME_SA" --role=roles/iam.serviceAccountTokenCreator \
      "${P[@]}" || note "no Token Creator binding on $DWD_TARGET to remove"
  fi
  # Monitoring: the policies first (a channel in use cannot be deleted), then the channels
  # deploy.sh made (by their display names), then the metrics the policies watched.
  for name in "$ALERT_POLICY_MISCONFIGURED" "$ALERT_POLICY_DEAD_LETTERS"; do
    find_names names LOOKUP_POLICY gcloud alpha monitoring policies list "${P[@]}" \
      --filter="displayName=\"$name\"" --format='value(name)' ||
      note "could not list alert policies (is the Monitoring API enabled?)"
    for kind in "${names[@]}"; do
      run gcloud alpha monitoring policies delete "$kind" "${P[@]}" --quiet
    done
  done
  find_names names LOOKUP_CHANNEL gcloud beta monitoring channels list "${P[@]}" \
    --filter="displayName:\"$ALERT_CHANNEL_DISPLAY\" OR displayName=\"$PUBSUB_CHANNEL_DISPLAY\"" \
    --format='value(name)' || note "could not list notification channels"
  for name in "${names[@]}"; do
    # --force: an alerting policy may still name the channel (it is going away anyway).
    run gcloud beta monitoring channels delete "$name" --force "${P[@]}" --quiet
  done
  for kind in "${METRIC_NAMES[@]}"; do
    if present gcloud logging metrics describe "smtp_sender_$kind" "${P[@]}"; then
      run gcloud logging metrics delete "smtp_sender_$kind" "${P[@]}" --quiet
    fi
  done
  for sa in "$RUNTIME_SA" "$TRIGGER_SA"; do
    if present gcloud iam service-accounts describe "$sa" "${P[@]}"; then
      run gcloud iam service-accounts delete "$sa" "${P[@]}" --quiet
    fi
  done
  note "left in place: enabled APIs, the build images in Artifact Registry (repository"
  note "gcf-artifacts in $REGION) and the gcf-v2-sources bucket, shared by all functions."
}

if $DRY_RUN; then
  note "deploy.sh --dry-run: nothing is changed; LOOKUP_* are values a real run reads first"
fi
if $TEARDOWN; then
  teardown
  exit 0
fi
if $REPLAY; then
  replay_dead_letters
  exit 0
fi

enable_apis
service_accounts
secrets
firestore
keyless_google
results_topic
egress
common_deploy_flags
deploy_http
deploy_pubsub
monitoring_pubsub_channel
schedule
invokers
metrics
alerts
summary
