// Webhook notifier: one POST per stored message; Pat makes the request after the hook returns.
function onEmailStored(email) {
  const headers = {"Content-Type": "application/json"};
  if (pat.settings.secret) headers["X-Pat-Secret"] = pat.settings.secret;
  pat.http.post(pat.settings.url, {
    event: "email.stored",
    id: email.id,
    tenant: email.tenant,
    subject: email.subject,
    from: email.from ? email.from.address : email.envelope.from,
    to: email.envelope.to,
    size: email.size,
    receivedAt: email.receivedAt,
  }, {headers});
}
