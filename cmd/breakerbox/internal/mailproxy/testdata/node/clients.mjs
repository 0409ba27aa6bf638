// nodemailer and imapflow through breakerbox's mail relay, as a TypeScript
// service would use them: plain SMTP and IMAP to the loopback listener, which
// does TLS to the provider. Run by mailproxy's Go tests; prints one JSON line.
import nodemailer from 'nodemailer';
import { ImapFlow } from 'imapflow';

if (process.argv[2] === 'open') {
  await whileOpen();
  process.exit(0);
}

const smtpPort = Number(process.env.SMTP_PORT);
const imapPort = Number(process.env.IMAP_PORT);
const size = Number(process.env.ATTACHMENT_BYTES);
const attachment = Buffer.alloc(size);
for (let i = 0; i < size; i++) attachment[i] = (i * 31 + 7) % 251;

const transport = nodemailer.createTransport({
  host: '127.0.0.1', port: smtpPort,
  secure: false, ignoreTLS: true, // plain SMTP to the relay; the relay does TLS to the provider
  auth: { user: 'user', pass: 'secret' },
});
const mail = {
  from: 'a@example.com', subject: 'nodemailer through breakerbox', text: 'Hello from nodemailer',
  attachments: [{ filename: 'blob.bin', content: attachment }],
};
const sent = await transport.sendMail({ ...mail, to: 'b@example.com' });
let rejected = 0;
try {
  await transport.sendMail({ ...mail, to: 'nobody@example.com', attachments: [] });
} catch (err) {
  rejected = err.responseCode;
}

const imap = new ImapFlow({
  host: '127.0.0.1', port: imapPort,
  secure: false, doSTARTTLS: false, // plain IMAP to the relay
  auth: { user: 'node', pass: 'secret' }, logger: false,
});
await imap.connect();
// Base64 lines: IMAP servers store CRLF line ends, so raw 8-bit bytes would not come back as sent.
const b64 = attachment.toString('base64').match(/.{1,76}/g).join('\r\n');
const raw = Buffer.from('Subject: imapflow\r\nContent-Transfer-Encoding: base64\r\n\r\n' + b64 + '\r\n');
await imap.append('INBOX', raw);
const lock = await imap.getMailboxLock('INBOX');
let fetched;
try {
  fetched = (await imap.fetchOne('*', { source: true })).source;
} finally {
  lock.release();
}
await imap.logout();

console.log(JSON.stringify({ accepted: sent.accepted, rejected, roundTrip: Buffer.compare(raw, fetched) === 0, fetchedBytes: fetched.length }));

// While a circuit is open, what a service sees: nodemailer fails with the
// relay's 421, imapflow with its BYE; neither waits for the provider.
async function whileOpen() {
  const out = {};
  const transport = nodemailer.createTransport({
    host: '127.0.0.1', port: Number(process.env.SMTP_PORT), secure: false, ignoreTLS: true,
  });
  try {
    await transport.sendMail({ from: 'a@example.com', to: 'b@example.com', text: 'x' });
  } catch (err) {
    out.smtpCode = err.responseCode;
    out.smtpResponse = err.response;
  }
  const imap = new ImapFlow({
    host: '127.0.0.1', port: Number(process.env.IMAP_PORT), secure: false, doSTARTTLS: false,
    auth: { user: 'node', pass: 'secret' }, logger: false,
  });
  imap.on('error', () => {});
  try {
    await imap.connect();
  } catch (err) {
    out.imapError = String(err.message);
    out.imapReason = err.reason; // imapflow keeps the server's BYE text here
  }
  console.log(JSON.stringify(out));
}
