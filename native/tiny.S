/* native/tiny.ts tiny_start: assembled into its CODE with
     gcc -c tiny.S -o tiny.o && objcopy -O binary -j .text tiny.o tiny.bin && xxd -p tiny.bin
   (test/system/tiny-children.test.ts checks that they agree when gcc is there). */
        .intel_syntax noprefix
        .text
        .globl tiny_start
/* tiny_start(req): rbx = req. Parent: block all signals, clone3, restore mask, return. */
tiny_start:
        push rbx
        push r12
        push r13
        mov rbx, rdi
        mov eax, 14                 /* rt_sigprocmask(SIG_SETMASK, req+8, req+16, 8) */
        mov edi, 2
        lea rsi, [rbx+8]
        lea rdx, [rbx+16]
        mov r10d, 8
        syscall
        mov eax, 435                /* clone3(req+24, 88) */
        lea rdi, [rbx+24]
        mov esi, 88
        syscall
        test rax, rax
        jz child
        mov r13, rax
        mov eax, 14                 /* rt_sigprocmask(SIG_SETMASK, req+16, NULL, 8) */
        mov edi, 2
        lea rsi, [rbx+16]
        xor edx, edx
        mov r10d, 8
        syscall
        mov rax, r13
        pop r13
        pop r12
        pop rbx
        ret
/* Child, on its own stack (never used): run the entries {nr, a1, a2, a3, a4, flags}
   at *req until nr == -1. flags: 1 must succeed (else *(req+112) = r, *(req+120) = nr,
   exit_group(127)); 2 repeat while r > 0 or r == -EINTR; 4 a1 = previous result. */
child:
        mov r12, [rbx]
        xor r13d, r13d
next:
        mov rax, [r12]
        cmp rax, -1
        je fallback
        mov rdi, [r12+8]
        test qword ptr [r12+40], 4
        jz 1f
        mov rdi, r13
1:      mov rsi, [r12+16]
        mov rdx, [r12+24]
        mov r10, [r12+32]
        syscall
        mov r13, rax
        test qword ptr [r12+40], 2
        jz 2f
        test rax, rax
        jg next
        cmp rax, -4
        je next
2:      test rax, rax
        jns advance
        test qword ptr [r12+40], 1
        jz advance
        mov [rbx+112], rax
        mov rax, [r12]
        mov [rbx+120], rax
        jmp fallback
advance:
        add r12, 48
        jmp next
fallback:
        mov eax, 231                /* exit_group(127) */
        mov edi, 127
        syscall
        jmp fallback
