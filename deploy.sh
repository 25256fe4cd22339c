#!/usr/bin/env bash
# deploy.sh — take a Google Cloud project from empty to both smtp-sender triggers running.
#
# Every step describes before it creates, so running it again converges instead of failing.
# `--dry-run` prints the gcloud commands (one per line, shell-quoted) and touches nothing.
# `--teardown` deletes what this script created. `--help` lists every variable.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

usage() {
  cat <<'EOF'
Usage: ./deploy.sh [--dry-run] [--teardown] [VAR=value | --var-name=value]...

Deploys smtp-sender (Cloud Run functions, gen2, python312) into one Google Cloud project:
an HTTP function, a Pub/Sub function with retries and a dead-letter topic, the SMTP secret,
a least-privilege runtime service account and, on request, a Cloud Scheduler job.
Safe to run again: every step checks before it creates.

Options:
  --dry-run     print every gcloud command it would run, one per line; change nothing
                (needs no credentials; values only known at run time are shown as LOOKUP_*)
  --teardown    delete what deploy.sh created (functions, topics, scheduler job, secrets,
                service accounts); APIs stay enabled
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
  BUILD_SERVICE_ACCOUNT   optional build service account e-mail, for projects whose default
                          Cloud Build account lacks permissions (passed as --build-service-account)

SMTP credentials (Secret Manager):
  SMTP_SECRET             secret name holding the SMTP profile JSON  (default smtp-profile)
  SMTP_PROFILE_FILE       file with the profile JSON to store as a new secret version, or "-"
                          for stdin; the content never appears on a command line. A version is
                          added only when it differs from the latest one. Unset: keep versions.
  WEBHOOK_SECRET          optional secret name of a bearer/HMAC token for callers outside IAM
  WEBHOOK_SECRET_FILE     optional file (or "-") whose content becomes a WEBHOOK_SECRET version

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

Cloud Monitoring (optional; nothing is created unless ALERT_CHANNEL=true):
  ALERT_CHANNEL           true = a Cloud Monitoring Pub/Sub notification channel on TOPIC, and
                          its service agent may publish there; the Pub/Sub function sends what
                          arrives to ALERT_RECIPIENTS (required then). Add the channel to your
                          alerting policies.                           (default false)

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
EOF
}

# ---------------------------------------------------------------- arguments and defaults

# Every variable --help documents; only these may be set with --var-name=value / VAR=value.
KNOWN_VARS=" PROJECT REGION HTTP_FUNCTION PUBSUB_FUNCTION SERVICE_ACCOUNT_NAME TRIGGER_ACCOUNT_NAME
 BUILD_SERVICE_ACCOUNT SMTP_SECRET SMTP_PROFILE_FILE WEBHOOK_SECRET WEBHOOK_SECRET_FILE
 ALLOWED_RECIPIENTS ALLOWED_SENDERS MAX_RECIPIENTS MAX_MESSAGE_BYTES MAX_EVENT_AGE_S
 SMTP_TIMEOUT_S SEND_DEADLINE_S SMTP_PROFILE_CACHE_TTL_S IDEMPOTENCY_TTL_S IDEMPOTENCY_LEASE_S
 TEMPLATES_DIR IDEMPOTENCY_STORE IDEMPOTENCY_COLLECTION FIRESTORE_LOCATION MEMORY CPU
 CONCURRENCY MAX_INSTANCES FUNCTION_TIMEOUT TOPIC DLQ_TOPIC DLQ_SUBSCRIPTION
 MAX_DELIVERY_ATTEMPTS MIN_RETRY_DELAY MAX_RETRY_DELAY INVOKERS PUBLIC_HTTP SCHEDULE
 SCHEDULE_MESSAGE SCHEDULE_MESSAGE_FILE SCHEDULE_TIME_ZONE SCHEDULER_JOB KEEP_SECRETS
 ALERT_RECIPIENTS WEBHOOK_RETRY_WINDOW_S ALERT_CHANNEL "

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
while (($#)); do
  case $1 in
    --dry-run) DRY_RUN=true ;;
    --teardown) TEARDOWN=true ;;
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
BUILD_SERVICE_ACCOUNT=${BUILD_SERVICE_ACCOUNT:-}
SMTP_SECRET=${SMTP_SECRET:-smtp-profile}
SMTP_PROFILE_FILE=${SMTP_PROFILE_FILE:-}
WEBHOOK_SECRET=${WEBHOOK_SECRET:-}
WEBHOOK_SECRET_FILE=${WEBHOOK_SECRET_FILE:-}
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
ALERT_RECIPIENTS=${ALERT_RECIPIENTS:-}
WEBHOOK_RETRY_WINDOW_S=${WEBHOOK_RETRY_WINDOW_S:-}
ALERT_CHANNEL=${ALERT_CHANNEL:-false}
IDEMPOTENCY_STORE=${IDEMPOTENCY_STORE:-memory}
IDEMPOTENCY_COLLECTION=${IDEMPOTENCY_COLLECTION:-}
FIRESTORE_LOCATION=${FIRESTORE_LOCATION:-$REGION}
# Sizing. The function holds one message in memory several times over while it decodes
# attachments and builds MIME (a 10 MiB request can mean ~60 MiB of working set), and the
# Python runtime with gRPC/Jinja2/pydantic loaded is ~120 MiB: 512Mi leaves room for
# CONCURRENCY such requests. Cloud Run only allows concurrency > 1 with a whole vCPU, hence
# CPU=1. Concurrency 4: a send is almost all waiting on the SMTP server, so one instance
# can overlap a few, and warm instances share the profile cache and in-memory ledger.
# MAX_INSTANCES=5 caps simultaneous SMTP sessions at 5 x 4 = 20, under what Gmail/M365
# accept per account, and caps cost if a caller floods the function; Pub/Sub simply
# redelivers what could not be placed. min-instances stays 0: nothing runs (or bills) idle.
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
  SMTP_PROFILE_CACHE_TTL_S IDEMPOTENCY_TTL_S IDEMPOTENCY_LEASE_S WEBHOOK_RETRY_WINDOW_S; do
  [[ -z ${!v} ]] || is_uint "${!v}" || die "$v must be a whole number"
done
((MAX_DELIVERY_ATTEMPTS >= 5 && MAX_DELIVERY_ATTEMPTS <= 100)) ||
  die "MAX_DELIVERY_ATTEMPTS must be 5..100 (Pub/Sub's range)"
[[ $CPU =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "CPU must be a number of vCPUs, e.g. 1 or 0.5"
if ((CONCURRENCY > 1)) && [[ $CPU =~ ^0*(\.[0-9]*)?$ ]]; then
  die "CONCURRENCY > 1 needs CPU >= 1 (a Cloud Run rule); set CONCURRENCY=1 for a fractional CPU"
fi
for v in PUBLIC_HTTP KEEP_SECRETS ALERT_CHANNEL; do
  is_bool "${!v}" || die "$v must be true or false"
done
$TEARDOWN || [[ $ALERT_CHANNEL == false || -n $ALERT_RECIPIENTS ]] ||
  die "ALERT_CHANNEL=true needs ALERT_RECIPIENTS: the channel's notifications carry no recipients"
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

P=(--project="$PROJECT")
RUNTIME_SA="${SERVICE_ACCOUNT_NAME}@${PROJECT}.iam.gserviceaccount.com"
TRIGGER_SA="${TRIGGER_ACCOUNT_NAME}@${PROJECT}.iam.gserviceaccount.com"

if ! $DRY_RUN; then
  command -v gcloud >/dev/null || die "gcloud not found: install the Google Cloud CLI"
  # Never stop at an interactive prompt: a prompt reading stdin could eat SMTP_PROFILE_FILE=-.
  export CLOUDSDK_CORE_DISABLE_PROMPTS=1
fi

# ---------------------------------------------------------------- steps

enable_apis() {
  local apis=(cloudfunctions.googleapis.com run.googleapis.com cloudbuild.googleapis.com
    artifactregistry.googleapis.com eventarc.googleapis.com pubsub.googleapis.com
    secretmanager.googleapis.com iam.googleapis.com)
  [[ -z $SCHEDULE ]] || apis+=(cloudscheduler.googleapis.com)
  [[ $IDEMPOTENCY_STORE != firestore ]] || apis+=(firestore.googleapis.com)
  ! $ALERT_CHANNEL || apis+=(monitoring.googleapis.com)
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

# Create secret $1 if absent; add a version from file $2 ("-" = stdin) unless the latest
# version already holds the same bytes; let the runtime account read this secret only.
ensure_secret() {
  local name=$1 file=$2
  if ! exists gcloud secrets describe "$name" "${P[@]}"; then
    run gcloud secrets create "$name" --replication-policy=automatic "${P[@]}"
  fi
  if [[ -n $file ]]; then
    # The payload travels file -> gcloud by --data-file: never argv, never the process list.
    # A regular file is compared with the latest version (bytes go through a pipe to cmp, and
    # nowhere else) so re-running does not pile up identical versions.
    if [[ $file != - ]] && ! $DRY_RUN &&
      gcloud secrets versions access latest --secret="$name" "${P[@]}" 2>/dev/null |
      cmp -s - "$file"; then
      note "secret $name: latest version already matches $file"
    else
      if $DRY_RUN && [[ $file != - ]]; then
        note "(a real run first compares the latest version with the file, through cmp only)"
        quote_cmd gcloud secrets versions access latest --secret="$name" "${P[@]}"
      fi
      run gcloud secrets versions add "$name" --data-file="$file" "${P[@]}"
    fi
  fi
  run_retry gcloud secrets add-iam-policy-binding "$name" \
    --member="serviceAccount:$RUNTIME_SA" --role=roles/secretmanager.secretAccessor "${P[@]}"
}

secrets() {
  note "step 3: secret $SMTP_SECRET (+ accessor for the runtime account on this secret only)"
  ensure_secret "$SMTP_SECRET" "$SMTP_PROFILE_FILE"
  if [[ -n $WEBHOOK_SECRET ]]; then
    note "step 3b: webhook token secret $WEBHOOK_SECRET"
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

# The function's environment, as one --set-env-vars value. The values are comma lists
# (ALLOWED_RECIPIENTS), so gcloud's alternate delimiter syntax (`gcloud topic escaping`)
# makes ';' the separator. --set-env-vars replaces the whole environment: what is not
# set here goes back to the function's default, so the deployment always matches the flags.
env_vars_flag() {
  local pairs=() v joined
  pairs+=("SMTP_SECRET=projects/$PROJECT/secrets/$SMTP_SECRET")
  pairs+=("GOOGLE_CLOUD_PROJECT=$PROJECT" "SMTP_TIMEOUT_S=$SMTP_TIMEOUT_S")
  pairs+=("SEND_DEADLINE_S=$SEND_DEADLINE_S")
  pairs+=("IDEMPOTENCY_STORE=$IDEMPOTENCY_STORE")
  [[ -z $WEBHOOK_SECRET ]] || pairs+=("WEBHOOK_SECRET=projects/$PROJECT/secrets/$WEBHOOK_SECRET")
  for v in ALLOWED_RECIPIENTS ALLOWED_SENDERS MAX_RECIPIENTS MAX_MESSAGE_BYTES \
    MAX_EVENT_AGE_S IDEMPOTENCY_COLLECTION SMTP_PROFILE_CACHE_TTL_S IDEMPOTENCY_TTL_S \
    IDEMPOTENCY_LEASE_S TEMPLATES_DIR ALERT_RECIPIENTS WEBHOOK_RETRY_WINDOW_S; do
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
  COMMON=(--gen2 --runtime=python312 --region="$REGION" "${P[@]}" --source="$SCRIPT_DIR"
    --service-account="$RUNTIME_SA" --memory="$MEMORY" --cpu="$CPU"
    --concurrency="$CONCURRENCY" --max-instances="$MAX_INSTANCES" --min-instances=0
    --timeout="${FUNCTION_TIMEOUT}s" "$(env_vars_flag)")
  [[ -z $BUILD_SERVICE_ACCOUNT ]] ||
    COMMON+=(--build-service-account="projects/$PROJECT/serviceAccounts/$BUILD_SERVICE_ACCOUNT")
}

deploy_http() {
  local auth=--no-allow-unauthenticated
  $PUBLIC_HTTP && auth=--allow-unauthenticated
  note "step 4: HTTP function $HTTP_FUNCTION ($auth)"
  run gcloud functions deploy "$HTTP_FUNCTION" "${COMMON[@]}" \
    --entry-point=send_http --trigger-http "$auth"
}

ensure_topic() {
  if ! exists gcloud pubsub topics describe "$1" "${P[@]}"; then
    run gcloud pubsub topics create "$1" "${P[@]}"
  fi
}

# The project number (service agents are named by it), looked up once per run.
PROJECT_NUMBER=""
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
  run gcloud functions deploy "$PUBSUB_FUNCTION" "${COMMON[@]}" \
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

# The Cloud Monitoring notification channels publishing to TOPIC, one name per line. Under
# --dry-run this prints the listing command instead (callers treat that as "none").
topic_channels() {
  local query=(gcloud beta monitoring channels list "${P[@]}"
    --filter="type=\"pubsub\" AND labels.topic=\"projects/$PROJECT/topics/$TOPIC\""
    --format='value(name)')
  if $DRY_RUN; then
    quote_cmd "${query[@]}"
    return 0
  fi
  "${query[@]}"
}

alert_channel() {
  $ALERT_CHANNEL || return 0
  local agent existing=""
  note "step 5b: Cloud Monitoring Pub/Sub channel on $TOPIC -> ALERT_RECIPIENTS"
  # gcloud cannot describe a channel by its topic: list them, and create one only if none.
  if $DRY_RUN; then
    topic_channels
  else
    existing=$(topic_channels)
  fi
  if [[ -z $existing ]]; then
    run gcloud beta monitoring channels create --display-name="smtp-sender ($TOPIC)" \
      --type=pubsub --channel-labels="topic=projects/$PROJECT/topics/$TOPIC" "${P[@]}"
  fi
  # Cloud Monitoring publishes as its notification service agent (created with the first
  # channel, hence run_retry): it may publish to this topic and nothing else.
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

summary() {
  local url example
  note "step 8: how to call it"
  lookup url LOOKUP_HTTP_URL gcloud functions describe "$HTTP_FUNCTION" --region="$REGION" \
    "${P[@]}" --format='value(serviceConfig.uri)'
  example='{"to": "you@example.com", "subject": "smtp-sender works", "text": "Hello from smtp-sender."}'
  {
    printf '# HTTP URL: %s\n' "$url"
    printf '# Topic:    projects/%s/topics/%s (dead letters: %s, held in %s)\n' \
      "$PROJECT" "$TOPIC" "$DLQ_TOPIC" "$DLQ_SUBSCRIPTION"
    printf '# Try it (as a principal with run.invoker):\n'
    printf "curl -sS -X POST %s -H \"Authorization: Bearer \$(gcloud auth print-identity-token)\"" "$url"
    printf " -H 'Content-Type: application/json' -d %s\n" "$(quote_cmd "$example")"
    quote_cmd gcloud pubsub topics publish "$TOPIC" "${P[@]}" --message="$example"
  }
}

teardown() {
  note "teardown: deleting what deploy.sh created in $PROJECT (APIs stay enabled)"
  local fn topic secret sa channel
  if $ALERT_CHANNEL; then
    # --force: alerting policies may still name the channel; its topic is going away anyway.
    if $DRY_RUN; then
      topic_channels
      run gcloud beta monitoring channels delete LOOKUP_CHANNEL_NAME --force "${P[@]}" --quiet
    else
      for channel in $(topic_channels); do
        run gcloud beta monitoring channels delete "$channel" --force "${P[@]}" --quiet
      done
    fi
  fi
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
  if present gcloud pubsub subscriptions describe "$DLQ_SUBSCRIPTION" "${P[@]}"; then
    run gcloud pubsub subscriptions delete "$DLQ_SUBSCRIPTION" "${P[@]}" --quiet
  fi
  for topic in "$TOPIC" "$DLQ_TOPIC"; do
    if present gcloud pubsub topics describe "$topic" "${P[@]}"; then
      run gcloud pubsub topics delete "$topic" "${P[@]}" --quiet
    fi
  done
  if ! $KEEP_SECRETS; then
    for secret in "$SMTP_SECRET" ${WEBHOOK_SECRET:+"$WEBHOOK_SECRET"}; do
      if present gcloud secrets describe "$secret" "${P[@]}"; then
        run gcloud secrets delete "$secret" "${P[@]}" --quiet
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

enable_apis
service_accounts
secrets
firestore
common_deploy_flags
deploy_http
deploy_pubsub
alert_channel
schedule
invokers
summary
