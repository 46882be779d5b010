// CSV exporter: a header row when installed, then one row per stored message.
const COLUMNS = ["received_at", "id", "from", "to", "subject", "size", "attachments"];

function onInstall() {
  pat.export.csv(pat.settings.file, COLUMNS);
}

function onEmailStored(email) {
  pat.export.csv(pat.settings.file, [
    email.receivedAt, email.id, email.from ? email.from.address : email.envelope.from,
    email.envelope.to.join(" "), email.subject, email.size, email.attachments.length,
  ]);
}
