// Auto-responder. RFC 3834: never answer automatic mail (which also stops reply loops).
function isAutomatic(email) {
  const submitted = (pat.email.header(email, "Auto-Submitted") || "no").toLowerCase();
  const precedence = (pat.email.header(email, "Precedence") || "").toLowerCase();
  return submitted !== "no" || ["bulk", "list", "junk"].indexOf(precedence) >= 0;
}

function onEmailReceived(email) {
  const to = email.replyTo.length ? email.replyTo[0].address
    : email.from ? email.from.address : email.envelope.from;
  if (!to || isAutomatic(email)) {
    pat.logger.info("not replying to", to || "(no sender)");
    return {metadata: {replied: false}};
  }
  const key = "replied:" + (email.messageId || email.id);
  if (pat.storage.get(key)) return {metadata: {replied: false, reason: "already replied"}};
  pat.email.send({
    host: pat.settings.smtp_host, port: pat.settings.smtp_port, from: pat.settings.from,
    to: [to], subject: "Re: " + email.subject, text: pat.settings.body,
    headers: {"Auto-Submitted": "auto-replied", "In-Reply-To": email.messageId || ""},
  });
  pat.storage.set(key, email.receivedAt);
  pat.storage.set("count", (pat.storage.get("count") || 0) + 1);
  return {metadata: {replied: true, to}};
}
