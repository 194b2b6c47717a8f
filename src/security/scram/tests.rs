use super::*;

/// A client's side of the exchange, as RFC 5802 computes it.
fn client_final(
    m: Mechanism,
    password: &str,
    client_first_bare: &str,
    server_first: &str,
) -> String {
    let attrs: Vec<&str> = server_first.split(',').collect();
    let nonce = attrs[0].strip_prefix("r=").unwrap();
    let salt = B64.decode(attrs[1].strip_prefix("s=").unwrap()).unwrap();
    let iterations: i32 = attrs[2].strip_prefix("i=").unwrap().parse().unwrap();
    let salted = m.salted_password(password.as_bytes(), &salt, iterations);
    let client_key = m.hmac(&salted, b"Client Key");
    let stored_key = m.hash(&client_key);
    let without_proof = format!("c=biws,r={nonce}");
    let auth = format!("{client_first_bare},{server_first},{without_proof}");
    let signature = m.hmac(&stored_key, auth.as_bytes());
    let proof: Vec<u8> = client_key
        .iter()
        .zip(&signature)
        .map(|(a, b)| a ^ b)
        .collect();
    format!("{without_proof},p={}", B64.encode(proof))
}

fn exchange(
    m: Mechanism,
    stored: &ScramCredential,
    user: &str,
    password: &str,
) -> Result<Step, AuthError> {
    let mut server = ScramServer::new(m);
    let bare = format!("n={user},r=fyko+d2lbbFgONRv9qkxdawL");
    let Step::Continue(first) = server.step(format!("n,,{bare}").as_bytes(), |u| {
        (u == "alice").then(|| stored.clone())
    })?
    else {
        panic!("the first step continues");
    };
    let first = String::from_utf8(first).unwrap();
    let fin = client_final(m, password, &bare, &first);
    server.step(fin.as_bytes(), |_| unreachable!("looked up once"))
}

#[test]
fn rfc_7677_sha256_exchange_verifies_and_signs() {
    // RFC 7677 §3: user "user", password "pencil".
    let m = Mechanism::Sha256;
    let salt = B64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
    let salted = m.salted_password(b"pencil", &salt, 4096);
    let stored = ScramCredential::from_salted_password(m, &salted, salt, 4096);
    let mut server = ScramServer::new(m);
    server.server_nonce = Some("%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0".into());
    let first = server
        .step(b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO", |u| {
            assert_eq!(u, "user");
            Some(stored.clone())
        })
        .unwrap();
    assert_eq!(
        first,
        Step::Continue(
            b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
                .to_vec()
        )
    );
    let done = server
        .step(
            b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
            |_| None,
        )
        .unwrap();
    assert_eq!(
        done,
        Step::Done {
            user: "user".into(),
            reply: b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=".to_vec()
        }
    );
    assert_eq!(server.step(b"again", |_| None), Err(AuthError::Ended));
}

#[test]
fn both_mechanisms_accept_the_password_and_refuse_others() {
    for m in Mechanism::ALL {
        let stored = ScramCredential::from_password(m, "alice-secret", ITERATIONS_MIN);
        assert!(matches!(
            exchange(m, &stored, "alice", "alice-secret"),
            Ok(Step::Done { ref user, .. }) if user == "alice"
        ));
        assert_eq!(
            exchange(m, &stored, "alice", "wrong"),
            Err(AuthError::InvalidCredentials)
        );
        // An unknown user fails at the proof, like a wrong password.
        assert_eq!(
            exchange(m, &stored, "mallory", "alice-secret"),
            Err(AuthError::InvalidCredentials)
        );
        assert!(stored.matches_password(m, b"alice-secret"));
        assert!(!stored.matches_password(m, b"alice-secreT"));
    }
}

#[test]
fn an_unknown_users_salt_is_stable_so_it_looks_like_a_real_one() {
    let salt = |_: ()| {
        let mut s = ScramServer::new(Mechanism::Sha512);
        match s.step(b"n,,n=ghost,r=abc", |_| None).unwrap() {
            Step::Continue(m) => String::from_utf8(m)
                .unwrap()
                .split(',')
                .nth(1)
                .unwrap()
                .to_owned(),
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(salt(()), salt(()));
}

#[test]
fn malformed_client_messages_are_refused() {
    let m = Mechanism::Sha256;
    for bad in [
        &b""[..],
        b"n",
        b"n,,",
        b"x,,n=a,r=b",
        b"p=tls-unique,,n=a,r=b",
        b"n,,n=,r=b",
        b"n,,n=a",
        b"n,,n=a,r=",
        b"n,,n=a=ZZ,r=b",
        b"n,,r=b,n=a",
        b"n,,n=a,r=b,m=must",
        b"n,,n=a,r=b,tokenauth=true",
        b"n,a=other,n=a,r=b",
        b"n,,n=a,r=b\xff",
        b"n,,n=a,r=b c",
    ] {
        let mut s = ScramServer::new(m);
        assert!(
            s.step(bad, |_| None).is_err(),
            "{:?}",
            String::from_utf8_lossy(bad)
        );
    }
    let huge = vec![b'a'; MESSAGE_MAX + 1];
    assert!(ScramServer::new(m).step(&huge, |_| None).is_err());
    // Escaped names decode; an authzid equal to the user is fine.
    let mut s = ScramServer::new(m);
    let mut seen = String::new();
    assert!(s
        .step(b"n,a=a=2Cb,n=a=2Cb,r=xyz", |u| {
            seen = u.to_owned();
            None
        })
        .is_ok());
    assert_eq!(seen, "a,b");
    // A client-final with the wrong binding, nonce or proof is refused.
    let stored = ScramCredential::from_password(m, "pw", ITERATIONS_MIN);
    for fin in [
        "c=eSws,r=NONCE,p=AAAA",
        "c=biws,r=other,p=AAAA",
        "c=biws,r=NONCE,p=***",
        "c=biws,r=NONCE",
        "garbage",
    ] {
        let mut s = ScramServer::new(m);
        let Ok(Step::Continue(first)) = s.step(b"n,,n=alice,r=abc", |_| Some(stored.clone()))
        else {
            panic!("first step");
        };
        let nonce = String::from_utf8(first).unwrap()[2..]
            .split(',')
            .next()
            .unwrap()
            .to_owned();
        let fin = fin.replace("NONCE", &nonce);
        assert!(s.step(fin.as_bytes(), |_| None).is_err(), "{fin}");
    }
}

#[test]
fn plain_messages_parse_and_malformed_ones_are_refused() {
    assert_eq!(
        parse_plain(b"\0alice\0secret"),
        Ok(("alice".to_owned(), b"secret".to_vec()))
    );
    assert_eq!(
        parse_plain(b"alice\0alice\0secret"),
        Ok(("alice".to_owned(), b"secret".to_vec()))
    );
    for bad in [
        &b""[..],
        b"alice",
        b"\0alice",
        b"\0\0pw",
        b"\0alice\0",
        b"bob\0alice\0pw",
        b"\0\xff\0pw",
    ] {
        assert!(parse_plain(bad).is_err(), "{bad:?}");
    }
}

/// Fixed-seed random bytes and mutations of real messages: each is answered or refused,
/// none panics.
#[test]
fn mutated_messages_never_panic() {
    let mut rng = sluice_base::Rng::new(7);
    let stored = ScramCredential::from_password(Mechanism::Sha256, "pw", ITERATIONS_MIN);
    let seeds: [&[u8]; 3] = [
        b"n,,n=alice,r=abcdef",
        b"c=biws,r=abc,p=AAAA",
        b"\0alice\0pw",
    ];
    for _ in 0..3000 {
        let mut msg = seeds[(rng.next_u64() % 3) as usize].to_vec();
        for _ in 0..(rng.next_u64() % 4) {
            if msg.is_empty() {
                break;
            }
            let i = (rng.next_u64() as usize) % msg.len();
            msg[i] = rng.next_u64() as u8;
        }
        let mut s = ScramServer::new(Mechanism::Sha256);
        let _ = s.step(&msg, |_| Some(stored.clone()));
        let _ = s.step(&msg, |_| Some(stored.clone()));
        let _ = parse_plain(&msg);
    }
}

#[test]
fn a_replayed_client_final_is_refused() {
    // An eavesdropper's copy of a successful exchange does not log in again: the server's
    // nonce is new each time, so the old client-final names the wrong one.
    let m = Mechanism::Sha256;
    let stored = ScramCredential::from_password(m, "pw", ITERATIONS_MIN);
    let bare = "n=alice,r=abcdef";
    let mut first = ScramServer::new(m);
    let Ok(Step::Continue(sf)) =
        first.step(format!("n,,{bare}").as_bytes(), |_| Some(stored.clone()))
    else {
        panic!("first step");
    };
    let fin = client_final(m, "pw", bare, &String::from_utf8(sf).unwrap());
    assert!(matches!(
        first.step(fin.as_bytes(), |_| None),
        Ok(Step::Done { .. })
    ));
    let mut again = ScramServer::new(m);
    assert!(again
        .step(format!("n,,{bare}").as_bytes(), |_| Some(stored.clone()))
        .is_ok());
    assert_eq!(
        again.step(fin.as_bytes(), |_| None),
        Err(AuthError::InvalidCredentials)
    );
}

fn rfc_client() -> ScramClient {
    let (client, first) =
        ScramClient::with_nonce(Mechanism::Sha256, "user", "rOprNGfwEbeRWgbNEkqO");
    assert_eq!(first, b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO");
    client
}

#[test]
fn the_client_side_computes_rfc_7677s_proof_and_checks_its_server_signature() {
    let client = rfc_client();
    let first = client
        .server_first(
            b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
        )
        .unwrap();
    assert_eq!(first.iterations, 4096);
    let salted = Mechanism::Sha256.salted_password(b"pencil", &first.salt, first.iterations);
    let fin = client.client_final(&first, &salted);
    assert_eq!(
        String::from_utf8(fin.message.clone()).unwrap(),
        "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
    );
    assert_eq!(
        fin.verify(b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="),
        Ok(())
    );
    // A server that does not hold the credential cannot sign.
    assert_eq!(
        fin.verify(b"v=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="),
        Err(AuthError::InvalidCredentials)
    );
    for bad in [&b"e=invalid-proof"[..], b"", b"v=***", &[0xff, 0xfe]] {
        assert!(fin.verify(bad).is_err(), "{bad:?} accepted");
    }
}

#[test]
fn the_client_refuses_a_server_first_it_must_not_act_on() {
    let client = rfc_client();
    let ok = "r=rOprNGfwEbeRWgbNEkqOxyz,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
    assert!(client.server_first(ok.as_bytes()).is_ok());
    for bad in [
        // The nonce must extend the client's, not replace or merely repeat it.
        "r=someoneElsesNonce,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
        "r=rOprNGfwEbeRWgbNEkqO,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
        // Unbounded or too weak a PBKDF2.
        "r=rOprNGfwEbeRWgbNEkqOxyz,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=100000000",
        "r=rOprNGfwEbeRWgbNEkqOxyz,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=1",
        "r=rOprNGfwEbeRWgbNEkqOxyz,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=-4096",
        "r=rOprNGfwEbeRWgbNEkqOxyz,s=,i=4096",
        "r=rOprNGfwEbeRWgbNEkqOxyz,s=!!!,i=4096",
        "r=rOprNGfwEbeRWgbNEkqOxyz,s=W22ZaJ0SNY7soEsUEjb6gQ==",
        "e=unknown-user",
        "",
    ] {
        assert!(
            client.server_first(bad.as_bytes()).is_err(),
            "{bad:?} accepted"
        );
    }
    assert!(client.server_first(&vec![b'r'; MESSAGE_MAX + 1]).is_err());
}

#[test]
fn the_client_and_server_agree_for_both_mechanisms_and_escaped_names() {
    for m in Mechanism::ALL {
        let user = "broker,one=1";
        let stored = ScramCredential::from_password(m, "s3cret", ITERATIONS_MIN);
        for (password, accepted) in [("s3cret", true), ("wrong", false)] {
            let (client, first) = ScramClient::new(m, user).unwrap();
            assert!(String::from_utf8(first.clone())
                .unwrap()
                .starts_with("n,,n=broker=2Cone=3D1,r="));
            let mut server = ScramServer::new(m);
            let Step::Continue(server_first) = server
                .step(&first, |u| (u == user).then(|| stored.clone()))
                .unwrap()
            else {
                panic!("the first step continues");
            };
            let sf = client.server_first(&server_first).unwrap();
            let salted = m.salted_password(password.as_bytes(), &sf.salt, sf.iterations);
            let fin = client.client_final(&sf, &salted);
            match server.step(&fin.message, |_| unreachable!("looked up once")) {
                Ok(Step::Done { user: u, reply }) => {
                    assert!(accepted, "{m:?}: a wrong password was accepted");
                    assert_eq!(u, user);
                    assert_eq!(fin.verify(&reply), Ok(()));
                }
                Ok(Step::Continue(_)) => panic!("the exchange ends after client-final"),
                Err(e) => {
                    assert!(!accepted, "{m:?}: {e}");
                    assert_eq!(e, AuthError::InvalidCredentials);
                }
            }
        }
    }
}

#[test]
fn a_plain_message_is_what_the_server_parses() {
    let m = plain_message("broker", "pw,with=odd\u{e9}chars");
    assert_eq!(
        parse_plain(&m).unwrap(),
        (
            "broker".to_owned(),
            "pw,with=odd\u{e9}chars".as_bytes().to_vec()
        )
    );
}
