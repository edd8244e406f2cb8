//! The delivery status notification (RFC 3464) the sink returns for an address it is told
//! to reject by a report ([`crate::Rejection::Dsn`]): shaped as Postfix writes one, with the
//! returned message's headers, so the hub's bounce reader is tested against the real form.

/// The report that `recipient` of the mail `data` (sent by `sender`, queued as `queue_id`)
/// could not be delivered: `5.1.1`, user unknown.
pub fn report(sender: &str, recipient: &str, data: &str, queue_id: u64) -> String {
    // The returned headers: the message up to its first empty line.
    let headers = data
        .split_once("\r\n\r\n")
        .map_or(data, |(headers, _)| headers);
    let boundary = format!("{queue_id:08X}.sink/raccordo-smtp-sink.invalid");
    let to = if sender.is_empty() {
        "postmaster@raccordo-smtp-sink.invalid"
    } else {
        sender
    };
    format!(
        "From: Mail Delivery System <MAILER-DAEMON@raccordo-smtp-sink.invalid>\r\n\
         To: <{to}>\r\n\
         Subject: Undelivered Mail Returned to Sender\r\n\
         Message-ID: <{queue_id:08X}.dsn@raccordo-smtp-sink.invalid>\r\n\
         Auto-Submitted: auto-replied\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: multipart/report; report-type=delivery-status;\r\n\
         \tboundary=\"{boundary}\"\r\n\
         \r\n\
         This is a MIME-encapsulated message.\r\n\
         \r\n\
         --{boundary}\r\n\
         Content-Description: Notification\r\n\
         Content-Type: text/plain; charset=us-ascii\r\n\
         \r\n\
         This is the mail system at host raccordo-smtp-sink.invalid.\r\n\
         \r\n\
         I'm sorry to have to inform you that your message could not\r\n\
         be delivered to one or more recipients.\r\n\
         \r\n\
         <{recipient}>: host mail.invalid said: 550 5.1.1 User unknown\r\n\
         \r\n\
         --{boundary}\r\n\
         Content-Description: Delivery report\r\n\
         Content-Type: message/delivery-status\r\n\
         \r\n\
         Reporting-MTA: dns; raccordo-smtp-sink.invalid\r\n\
         X-Postfix-Queue-ID: {queue_id:08X}\r\n\
         X-Postfix-Sender: rfc822; {to}\r\n\
         \r\n\
         Final-Recipient: rfc822; {recipient}\r\n\
         Original-Recipient: rfc822;{recipient}\r\n\
         Action: failed\r\n\
         Status: 5.1.1\r\n\
         Remote-MTA: dns; mail.invalid\r\n\
         Diagnostic-Code: smtp; 550 5.1.1 <{recipient}>: Recipient address rejected:\r\n\
         \x20   User unknown in virtual mailbox table\r\n\
         \r\n\
         --{boundary}\r\n\
         Content-Description: Undelivered Message Headers\r\n\
         Content-Type: text/rfc822-headers\r\n\
         \r\n\
         {headers}\r\n\
         \r\n\
         --{boundary}--\r\n"
    )
}
