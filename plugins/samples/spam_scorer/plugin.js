// Spam scorer: a handful of SpamAssassin-like content rules; each adds to the score.
const RULES = [
  {name: "SUBJ_ALL_CAPS", score: 1.5, test: e => /[A-Z]{4}/.test(e.subject) && e.subject === e.subject.toUpperCase()},
  {name: "SUBJ_EXCLAIM", score: 1.0, test: e => /!{2,}/.test(e.subject)},
  {name: "MONEY_WORDS", score: 2.0, test: e => /\b(free money|winner|lottery|million dollars|wire transfer)\b/i.test(e.subject + " " + e.text)},
  {name: "URGENT", score: 1.0, test: e => /\b(urgent|act now|limited time)\b/i.test(e.subject + " " + e.text)},
  {name: "HTML_ONLY", score: 1.2, test: e => !e.text && !!e.html},
  {name: "MANY_LINKS", score: 1.5, test: e => pat.email.links(e).length > 10},
  {name: "MISSING_DATE", score: 0.8, test: e => !e.date},
  {name: "MISSING_MESSAGE_ID", score: 0.8, test: e => !e.messageId},
  {name: "EMPTY_SUBJECT", score: 0.5, test: e => !e.subject.trim()},
];

function onEmailReceived(email) {
  const hits = RULES.filter(rule => rule.test(email));
  const score = Math.round(hits.reduce((sum, rule) => sum + rule.score, 0) * 10) / 10;
  const threshold = Number(pat.settings.threshold);
  const spam = score >= threshold;
  const names = hits.map(rule => rule.name).join(",") || "none";
  return {
    headers: {
      "X-Spam-Score": score.toFixed(1),
      "X-Spam-Status": `${spam ? "Yes" : "No"}, score=${score.toFixed(1)} required=${threshold.toFixed(1)} tests=${names}`,
    },
    metadata: {score, spam, rules: hits.map(rule => rule.name)},
  };
}

function onActivate() {
  pat.logger.info("spam scorer active, threshold", pat.settings.threshold);
}
